//! Which device and compute dtype a model runs on: parsed once from `--device` / `--dtype`
//! (settings.rs), opened when a model loads.

use candle_core::{DType, Device};

use crate::error::{Error, Result};

/// `--device`: cpu, cuda, cuda:N, or unset (CUDA when built with it and a GPU is present,
/// otherwise the CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
}

impl DeviceSpec {
    /// Parse a `--device` value (None: [`DeviceSpec::Auto`]). A CUDA device in a build
    /// without CUDA is an error here, before anything loads.
    pub fn parse(spec: Option<&str>) -> Result<Self> {
        let s = match spec {
            None => return Ok(Self::Auto),
            Some(s) => s,
        };
        if s == "cpu" {
            return Ok(Self::Cpu);
        }
        if s != "cuda" && !s.starts_with("cuda:") {
            return Err(Error::Config(format!(
                "--device {s}: expected cpu, cuda or cuda:N"
            )));
        }
        let n = match s.strip_prefix("cuda:") {
            Some(n) => n.parse().map_err(|_| {
                Error::Config(format!("--device {s}: expected cuda:N with N a GPU index"))
            })?,
            None => 0,
        };
        if !cfg!(feature = "cuda") {
            return Err(Error::Config(format!(
                "--device {s}: this bwb was built without CUDA; rebuild with ./start.sh --cuda or use --device cpu"
            )));
        }
        Ok(Self::Cuda(n))
    }

    /// Open the device. [`DeviceSpec::Auto`] falls back to the CPU with a warning when CUDA
    /// was built in but is unusable.
    pub fn open(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto => {
                if cfg!(feature = "cuda") {
                    match open_cuda(0) {
                        Ok(d) => return Ok(d),
                        Err(e) => tracing::warn!("no usable CUDA GPU ({e}); running on the CPU"),
                    }
                }
                Ok(Device::Cpu)
            }
            Self::Cuda(n) => open_cuda(n).map_err(|e| {
                let name = if n == 0 {
                    "cuda".to_string()
                } else {
                    format!("cuda:{n}")
                };
                Error::Config(format!("--device {name}: cannot open the GPU: {e}"))
            }),
        }
    }
}

/// Parse `--dtype`: f32, bf16 or f16.
pub fn parse_dtype(s: &str) -> Result<DType> {
    match s {
        "f32" => Ok(DType::F32),
        "bf16" => Ok(DType::BF16),
        "f16" => Ok(DType::F16),
        other => Err(Error::Config(format!(
            "--dtype {other}: expected f32, bf16 or f16"
        ))),
    }
}

/// The `--dtype` name of a compute dtype.
pub fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::BF16 => "bf16",
        DType::F16 => "f16",
        _ => "f32",
    }
}

/// Open GPU `n`. cudarc loads the CUDA libraries at first use and panics when one is missing
/// (no driver on this machine): turn that into an error, without the panic's message.
fn open_cuda(n: usize) -> std::result::Result<Device, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(|| Device::new_cuda(n));
    std::panic::set_hook(hook);
    match r {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(e)) => Err(crate::error::first_line(&e)),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| p.downcast_ref::<&str>().copied())
                .unwrap_or("CUDA initialisation panicked");
            // cudarc: `Unable to dynamically load the "cuda" shared library - searched for …`
            let short = msg.split(" - ").next().unwrap_or(msg);
            Err(format!("{short}; is the NVIDIA driver installed?"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_and_dtype_parse() {
        assert_eq!(DeviceSpec::parse(None).unwrap(), DeviceSpec::Auto);
        assert_eq!(DeviceSpec::parse(Some("cpu")).unwrap(), DeviceSpec::Cpu);
        let err = DeviceSpec::parse(Some("tpu")).unwrap_err().to_string();
        assert!(err.contains("--device tpu"), "{err}");
        let err = DeviceSpec::parse(Some("cuda:x")).unwrap_err().to_string();
        assert!(err.contains("cuda:N"), "{err}");
        if !cfg!(feature = "cuda") {
            let err = DeviceSpec::parse(Some("cuda")).unwrap_err().to_string();
            assert!(err.contains("without CUDA"), "{err}");
        }
        assert_eq!(parse_dtype("bf16").unwrap(), DType::BF16);
        assert_eq!(dtype_name(parse_dtype("f16").unwrap()), "f16");
        assert!(parse_dtype("f64")
            .unwrap_err()
            .to_string()
            .contains("--dtype f64"));
    }
}
