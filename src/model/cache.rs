//! The caller-owned KV cache: per layer `(B, Hkv, T, D)` keys and values, plus the position
//! of every cached slot per row (negative for padding), from which attention masks are built.
//!
//! Keys and values live in preallocated `(B, Hkv, capacity, D)` buffers that grow in chunks of
//! [`CHUNK`] slots: a step writes its new rows in place and attention reads the first `T` rows
//! as a view (the CUDA kernels read that layout directly), so a decode step copies only its own
//! keys instead of the whole cache (`Tensor::cat` per step made generation O(T²) in memory
//! traffic).

use candle_core::{DType, Result, Tensor};

/// Slots added to a layer's buffers when they are full.
pub const CHUNK: usize = 256;

#[derive(Debug, Clone)]
struct LayerKv {
    /// `(B, Hkv, capacity, D)`, contiguous; the first `len` slots are filled.
    k: Tensor,
    v: Tensor,
    len: usize,
}

impl LayerKv {
    fn capacity(&self) -> usize {
        self.k.dims().get(2).copied().unwrap_or(0)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Cache {
    kv: Vec<Option<LayerKv>>,
    positions: Option<Tensor>,
}

impl Cache {
    pub fn new(num_layers: usize) -> Self {
        Self {
            kv: vec![None; num_layers],
            positions: None,
        }
    }

    /// Record the positions `(B, L)` of the tokens about to be appended and return the
    /// positions of every key slot `(B, T)`. Call once per forward, before the layers.
    pub fn extend_positions(&mut self, positions: &Tensor) -> Result<Tensor> {
        let all = match &self.positions {
            Some(p) => Tensor::cat(&[p, positions], 1)?,
            None => positions.clone(),
        };
        self.positions = Some(all.clone());
        Ok(all)
    }

    /// Append this step's keys and values `(B, Hkv, L, D)` for `layer` and return all of them,
    /// `(B, Hkv, T, D)` views of the layer's buffers.
    pub fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let Some(slot) = self.kv.get_mut(layer) else {
            candle_core::bail!("KV cache: no layer {layer}");
        };
        let (b, h, l, d) = k.dims4()?;
        if v.dims() != k.dims() {
            candle_core::bail!("KV cache: keys {:?} and values {:?}", k.dims(), v.dims());
        }
        let len = slot.as_ref().map_or(0, |e| e.len);
        if slot.as_ref().is_none_or(|e| len + l > e.capacity()) {
            let cap = (len + l).next_multiple_of(CHUNK);
            let nk = Tensor::zeros((b, h, cap, d), k.dtype(), k.device())?;
            let nv = Tensor::zeros((b, h, cap, d), v.dtype(), v.device())?;
            if let Some(old) = slot.as_ref().filter(|e| e.len > 0) {
                nk.slice_set(&old.k.narrow(2, 0, len)?.contiguous()?, 2, 0)?;
                nv.slice_set(&old.v.narrow(2, 0, len)?.contiguous()?, 2, 0)?;
            }
            *slot = Some(LayerKv { k: nk, v: nv, len });
        }
        let Some(e) = slot.as_mut() else {
            candle_core::bail!("KV cache: layer {layer} lost its buffers");
        };
        if e.k.dims()[..2] != [b, h] || e.k.dims()[3] != d {
            candle_core::bail!(
                "KV cache: layer {layer} holds {:?}, got keys {:?}",
                e.k.dims(),
                k.dims()
            );
        }
        e.k.slice_set(&k.contiguous()?, 2, e.len)?;
        e.v.slice_set(&v.contiguous()?, 2, e.len)?;
        e.len += l;
        Ok((e.k.narrow(2, 0, e.len)?, e.v.narrow(2, 0, e.len)?))
    }

    /// Number of cached slots per row.
    pub fn len(&self) -> usize {
        self.positions
            .as_ref()
            .and_then(|p| p.dim(1).ok())
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keep only the given batch rows (finished rows leave the batch).
    pub fn select_rows(&mut self, rows: &Tensor) -> Result<()> {
        for e in self.kv.iter_mut().flatten() {
            e.k = e.k.index_select(rows, 0)?;
            e.v = e.v.index_select(rows, 0)?;
        }
        if let Some(p) = &self.positions {
            self.positions = Some(p.contiguous()?.index_select(rows, 0)?);
        }
        Ok(())
    }

    /// Append `other`'s batch rows after this cache's (a sequence joining a running batch).
    /// The side with fewer slots is left-padded with masked slots (position -1), so every
    /// row's own slots stay contiguous and end at the newest slot.
    pub fn append_rows(&mut self, other: Cache) -> Result<()> {
        let Some(pa) = self.positions.clone() else {
            *self = other;
            return Ok(());
        };
        let Some(pb) = other.positions.clone() else {
            return Ok(());
        };
        let (ta, tb) = (self.len(), other.len());
        let t = ta.max(tb);
        self.positions = Some(Tensor::cat(
            &[
                &pad_front(&pa, 1, t - ta, -1.0)?,
                &pad_front(&pb, 1, t - tb, -1.0)?,
            ],
            0,
        )?);
        for (a, b) in self.kv.iter_mut().zip(other.kv) {
            let (ea, eb) = match (a.as_ref(), b) {
                (Some(ea), Some(eb)) => (ea, eb),
                (None, None) => continue, // a layer that caches nothing
                _ => candle_core::bail!("KV cache: joining rows that cache different layers"),
            };
            let join = |x: &Tensor, y: &Tensor| -> Result<Tensor> {
                let x = pad_front(&x.narrow(2, 0, ea.len)?, 2, t - ta, 0.0)?;
                let y = pad_front(&y.narrow(2, 0, eb.len)?, 2, t - tb, 0.0)?;
                let both = Tensor::cat(&[&x, &y], 0)?;
                with_capacity(&both, t)
            };
            *a = Some(LayerKv {
                k: join(&ea.k, &eb.k)?,
                v: join(&ea.v, &eb.v)?,
                len: t,
            });
        }
        Ok(())
    }

    /// Drop the first `n` slots of every row (columns that are padding in every row once the
    /// rows that needed them have left the batch).
    pub fn trim_front(&mut self, n: usize) -> Result<()> {
        let t = self.len();
        if n == 0 || n > t {
            return Ok(());
        }
        if let Some(p) = &self.positions {
            self.positions = Some(p.narrow(1, n, t - n)?.contiguous()?);
        }
        for e in self.kv.iter_mut().flatten() {
            let keep = e.len.saturating_sub(n);
            e.k = with_capacity(&e.k.narrow(2, n, keep)?, keep)?;
            e.v = with_capacity(&e.v.narrow(2, n, keep)?, keep)?;
            e.len = keep;
        }
        Ok(())
    }
}

/// `x` with `n` slots of `value` before its own along `dim`.
fn pad_front(x: &Tensor, dim: usize, n: usize, value: f64) -> Result<Tensor> {
    if n == 0 {
        return Ok(x.clone());
    }
    let mut dims = x.dims().to_vec();
    dims[dim] = n;
    let pad = if x.dtype() == DType::I64 {
        Tensor::full(value as i64, dims, x.device())?
    } else {
        Tensor::full(value, dims, x.device())?.to_dtype(x.dtype())?
    };
    Tensor::cat(&[&pad, x], dim)
}

/// A `(B, H, capacity, D)` buffer holding `x`'s `len` slots first (capacity a multiple of
/// [`CHUNK`] above `len`).
fn with_capacity(x: &Tensor, len: usize) -> Result<Tensor> {
    let (b, h, _, d) = x.dims4()?;
    let cap = (len + 1).next_multiple_of(CHUNK);
    let buf = Tensor::zeros((b, h, cap, d), x.dtype(), x.device())?;
    if len > 0 {
        buf.slice_set(&x.contiguous()?, 2, 0)?;
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// A one-layer cache of `rows` rows holding `len` slots, keys = values = slot index + 1.
    fn cache(rows: usize, len: usize) -> Cache {
        let dev = Device::Cpu;
        let mut c = Cache::new(1);
        let pos: Vec<i64> = (0..rows).flat_map(|_| 0..len as i64).collect();
        c.extend_positions(&Tensor::from_vec(pos, (rows, len), &dev).unwrap())
            .unwrap();
        let kv: Vec<f32> = (0..rows)
            .flat_map(|_| (1..=len).map(|i| i as f32))
            .collect();
        let kv = Tensor::from_vec(kv, (rows, 1, len, 1), &dev).unwrap();
        c.append(0, &kv, &kv).unwrap();
        c
    }

    fn keys(c: &mut Cache) -> Vec<Vec<f32>> {
        let z = Tensor::zeros(
            (c.kv[0].as_ref().unwrap().k.dim(0).unwrap(), 1, 0, 1),
            DType::F32,
            &Device::Cpu,
        )
        .unwrap();
        let (k, _) = c.append(0, &z, &z).unwrap();
        k.squeeze(3).unwrap().squeeze(1).unwrap().to_vec2().unwrap()
    }

    #[test]
    fn joined_rows_are_left_padded_and_trimmed_padding_goes() {
        let mut a = cache(1, 3);
        a.append_rows(cache(1, 1)).unwrap();
        let pos: Vec<Vec<i64>> = a.positions.clone().unwrap().to_vec2().unwrap();
        assert_eq!(pos, vec![vec![0, 1, 2], vec![-1, -1, 0]]);
        assert_eq!(keys(&mut a), vec![vec![1.0, 2.0, 3.0], vec![0.0, 0.0, 1.0]]);
        // A shorter batch joined by a longer row pads the batch instead.
        let mut b = cache(2, 1);
        b.append_rows(cache(1, 2)).unwrap();
        let pos: Vec<Vec<i64>> = b.positions.clone().unwrap().to_vec2().unwrap();
        assert_eq!(pos, vec![vec![-1, 0], vec![-1, 0], vec![0, 1]]);
        // An empty cache takes the joining one as is.
        let mut e = Cache::default();
        e.append_rows(cache(1, 2)).unwrap();
        assert_eq!(e.len(), 2);
        // The long row leaves: the two leading columns are padding in every row left.
        a.select_rows(&Tensor::new(&[1u32], &Device::Cpu).unwrap())
            .unwrap();
        a.trim_front(2).unwrap();
        let pos: Vec<Vec<i64>> = a.positions.clone().unwrap().to_vec2().unwrap();
        assert_eq!(pos, vec![vec![0]]);
        assert_eq!(keys(&mut a), vec![vec![1.0]]);
    }
}
