//! The caller-owned KV cache: per layer `(B, Hkv, T, D)` keys and values, plus the position
//! of every cached slot per row (negative for padding), from which attention masks are built.

use candle_core::{Result, Tensor};

#[derive(Debug, Clone, Default)]
pub struct Cache {
    kv: Vec<Option<(Tensor, Tensor)>>,
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

    /// Append this step's keys and values for `layer` and return the full ones.
    pub fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (k, v) = match &self.kv[layer] {
            Some((pk, pv)) => (Tensor::cat(&[pk, k], 2)?, Tensor::cat(&[pv, v], 2)?),
            None => (k.contiguous()?, v.contiguous()?),
        };
        self.kv[layer] = Some((k.clone(), v.clone()));
        Ok((k, v))
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
        // index_select needs contiguous input; a cache rebuilt from views (Phi-3's fused qkv
        // after a rope switch) may not be.
        for kv in self.kv.iter_mut().flatten() {
            *kv = (
                kv.0.contiguous()?.index_select(rows, 0)?,
                kv.1.contiguous()?.index_select(rows, 0)?,
            );
        }
        if let Some(p) = &self.positions {
            self.positions = Some(p.contiguous()?.index_select(rows, 0)?);
        }
        Ok(())
    }
}
