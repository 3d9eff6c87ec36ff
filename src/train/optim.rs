//! The optimizer side of training: AdamW with decoupled weight decay over f32 master
//! weights, the learning-rate schedule, and global-norm gradient clipping.
//!
//! Our own AdamW rather than `candle_nn::AdamW`: its moment estimates are private, and an
//! exact resume needs to save and restore them (and the step count) bit for bit.

use candle_core::{DType, Tensor, Var};

use crate::config::LrSchedule;
use crate::error::Result;

/// PyTorch's `torch.optim.AdamW` defaults (what HF's Trainer uses).
pub const BETA1: f64 = 0.9;
pub const BETA2: f64 = 0.999;
pub const EPS: f64 = 1e-8;

/// AdamW state for a list of parameters (kept in the order given).
pub struct AdamW {
    params: Vec<Var>,
    /// First and second moment estimates, f32, one per parameter.
    pub m: Vec<Tensor>,
    pub v: Vec<Tensor>,
    /// Optimizer steps taken so far.
    pub step: usize,
    pub weight_decay: f64,
}

impl AdamW {
    /// Fresh state (zero moments) for `params`, which must be f32.
    pub fn new(params: Vec<Var>, weight_decay: f64) -> Result<Self> {
        let zeros = |p: &Var| Tensor::zeros(p.shape(), DType::F32, p.device());
        let m = params
            .iter()
            .map(zeros)
            .collect::<candle_core::Result<_>>()?;
        let v = params
            .iter()
            .map(zeros)
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            params,
            m,
            v,
            step: 0,
            weight_decay,
        })
    }

    pub fn params(&self) -> &[Var] {
        &self.params
    }

    /// One update with gradients `grads` (same order as the parameters) at learning rate
    /// `lr`, exactly as `torch.optim.AdamW` (decoupled decay `p ← p·(1 − lr·wd)` first).
    pub fn step(&mut self, grads: &[Tensor], lr: f64) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let bc1 = 1.0 - BETA1.powi(t);
        let bc2 = 1.0 - BETA2.powi(t);
        for (i, (p, g)) in self.params.iter().zip(grads).enumerate() {
            let g = g.to_dtype(DType::F32)?;
            let m = ((&self.m[i] * BETA1)? + (&g * (1.0 - BETA1))?)?;
            let v = ((&self.v[i] * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?;
            // p ← p·(1 − lr·wd) − lr · m̂ / (√v̂ + ε), with m̂ = m / bc1, v̂ = v / bc2.
            let denom = ((&v / bc2)?.sqrt()? + EPS)?;
            let update = ((&m / bc1)? / denom)?;
            let decayed = (p.as_tensor() * (1.0 - lr * self.weight_decay))?;
            p.set(&(decayed - (update * lr)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }
}

/// Learning rate for optimizer step `step` (0-based) of `total`, as transformers'
/// `get_{cosine,linear,constant}_schedule_with_warmup` (stepped after each update, so the
/// first update of a warm-up uses lr 0).
pub fn lr_at(schedule: LrSchedule, base: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return base * step as f64 / warmup.max(1) as f64;
    }
    let decay_steps = total.saturating_sub(warmup).max(1) as f64;
    let progress = (step - warmup) as f64 / decay_steps;
    match schedule {
        LrSchedule::Constant => base,
        LrSchedule::Linear => base * (1.0 - progress).max(0.0),
        LrSchedule::Cosine => base * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
    }
}

/// Warm-up steps for a ratio of the total, rounded up as transformers does.
pub fn warmup_steps(ratio: f64, total: usize) -> usize {
    (ratio * total as f64).ceil() as usize
}

/// The global L2 norm of all gradients (computed in f64 on the host).
pub fn global_norm(grads: &[Tensor]) -> Result<f64> {
    let mut sq = 0.0f64;
    for g in grads {
        let s: f32 = g.to_dtype(DType::F32)?.sqr()?.sum_all()?.to_scalar()?;
        sq += s as f64;
    }
    Ok(sq.sqrt())
}

/// Scale gradients so their global norm is at most `max_norm` (`max_norm <= 0`: off), as
/// `torch.nn.utils.clip_grad_norm_`. Returns the norm before clipping.
pub fn clip(grads: &mut [Tensor], max_norm: f64) -> Result<f64> {
    let norm = global_norm(grads)?;
    if max_norm > 0.0 {
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            for g in grads.iter_mut() {
                *g = (&*g * coef)?;
            }
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn adamw_matches_the_closed_form_first_step() {
        // After one step from zero moments, m̂ = g and v̂ = g², so the update is
        // lr · g / (|g| + ε) ≈ lr · sign(g), after decay p·(1 − lr·wd).
        let p = Var::from_vec(vec![1.0f32, -2.0, 0.5], 3, &Device::Cpu).unwrap();
        let mut opt = AdamW::new(vec![p.clone()], 0.1).unwrap();
        let g = Tensor::from_vec(vec![0.5f32, -0.25, 0.0], 3, &Device::Cpu).unwrap();
        opt.step(&[g], 0.01).unwrap();
        let got: Vec<f32> = p.as_tensor().to_vec1().unwrap();
        let want = [
            1.0 * (1.0 - 0.001) - 0.01,
            -2.0 * (1.0 - 0.001) + 0.01,
            0.5 * (1.0 - 0.001),
        ];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w as f32).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn schedules_follow_transformers() {
        use LrSchedule::*;
        assert_eq!(lr_at(Cosine, 1.0, 0, 2, 10), 0.0);
        assert_eq!(lr_at(Cosine, 1.0, 1, 2, 10), 0.5);
        assert_eq!(lr_at(Cosine, 1.0, 2, 2, 10), 1.0);
        assert!((lr_at(Cosine, 1.0, 6, 2, 10) - 0.5).abs() < 1e-12);
        assert!((lr_at(Linear, 1.0, 6, 2, 10) - 0.5).abs() < 1e-12);
        assert_eq!(lr_at(Constant, 1.0, 9, 2, 10), 1.0);
        assert_eq!(warmup_steps(0.03, 100), 3);
        assert_eq!(warmup_steps(0.0, 100), 0);
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let mut g = vec![
            Tensor::from_vec(vec![3.0f32], 1, &Device::Cpu).unwrap(),
            Tensor::from_vec(vec![4.0f32], 1, &Device::Cpu).unwrap(),
        ];
        let n = clip(&mut g, 1.0).unwrap();
        assert!((n - 5.0).abs() < 1e-9);
        assert!((global_norm(&g).unwrap() - 1.0).abs() < 1e-5);
        let n = clip(&mut g, 10.0).unwrap();
        assert!((n - 1.0).abs() < 1e-5, "no clipping below the max");
    }
}
