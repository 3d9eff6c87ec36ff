//! The fused kernels (src/kernels/) against the composed candle ops they replace: values and
//! gradients on the CPU here, and the CUDA kernels against the same references where a GPU is
//! present (`bwb bench kernels --device cuda` runs the same checks on the GPU machine).

use bwb::kernels::check::{self, Check};
use candle_core::Device;

fn assert_checks(kernel: &str, dev: &Device) {
    let checks: Vec<Check> = check::run_kernel(kernel, dev).expect("checks run");
    assert!(!checks.is_empty(), "{kernel}: no checks");
    let bad: Vec<String> = checks
        .iter()
        .filter(|c| !c.ok())
        .map(|c| {
            format!(
                "{} {}: err {:.3e} > tol {:.1e}",
                c.kernel, c.case, c.err, c.tol
            )
        })
        .collect();
    assert!(bad.is_empty(), "{kernel} on {dev:?}:\n{}", bad.join("\n"));
}

/// The GPU, where this build has CUDA and the machine has one.
fn gpu() -> Option<Device> {
    Device::new_cuda(0).ok()
}

macro_rules! kernel_tests {
    ($cpu:ident, $gpu:ident, $name:literal) => {
        #[test]
        fn $cpu() {
            assert_checks($name, &Device::Cpu);
        }

        #[test]
        fn $gpu() {
            match gpu() {
                Some(dev) => assert_checks($name, &dev),
                None => eprintln!(
                    "no GPU in this build/machine: CUDA check of {} skipped",
                    $name
                ),
            }
        }
    };
}

kernel_tests!(
    rms_norm_cpu_matches_composed_ops,
    rms_norm_cuda_matches_reference,
    "rms_norm"
);
kernel_tests!(
    rope_cpu_matches_composed_ops,
    rope_cuda_matches_reference,
    "rope"
);
kernel_tests!(
    cross_entropy_cpu_matches_composed_ops,
    cross_entropy_cuda_matches_reference,
    "cross_entropy"
);
kernel_tests!(
    dequant_cpu_matches_candle,
    dequant_cuda_matches_reference,
    "dequant"
);
kernel_tests!(
    attention_cpu_matches_composed_ops,
    attention_cuda_matches_reference,
    "attention"
);

#[test]
fn empty_inputs_and_bad_arguments_are_handled_without_panics() {
    use candle_core::quantized::{GgmlDType, QStorage, QTensor};
    use candle_core::{DType, Tensor};
    let cpu = Device::Cpu;
    // Empty tensors pass through (a GPU launch of zero blocks would be an error).
    let x = Tensor::zeros((0, 8), DType::F32, &cpu).unwrap();
    let w = Tensor::ones(8, DType::F32, &cpu).unwrap();
    assert_eq!(
        bwb::kernels::rmsnorm::rms_norm(&x, &w, 1e-6)
            .unwrap()
            .dims(),
        [0, 8]
    );
    let q = Tensor::zeros((1, 2, 0, 8), DType::F32, &cpu).unwrap();
    let cs = Tensor::zeros((1, 1, 0, 8), DType::F32, &cpu).unwrap();
    assert_eq!(
        bwb::kernels::rope::rope(&q, &cs, &cs, 8).unwrap().dims(),
        [1, 2, 0, 8]
    );
    // A weight of the wrong length is an error, not an out-of-bounds read.
    let x = Tensor::ones((2, 8), DType::F32, &cpu).unwrap();
    let w4 = Tensor::ones(4, DType::F32, &cpu).unwrap();
    assert!(bwb::kernels::rmsnorm::rms_norm(&x, &w4, 1e-6).is_err());
    assert!(bwb::kernels::rmsnorm::rms_norm_backward(&x, &w4, &x, 1e-6).is_err());
    // An odd or too-large rotary dimension.
    let q = Tensor::zeros((1, 1, 3, 8), DType::F32, &cpu).unwrap();
    let cs = Tensor::zeros((1, 1, 3, 7), DType::F32, &cpu).unwrap();
    assert!(bwb::kernels::rope::rope(&q, &cs, &cs, 7).is_err());
    // A target id outside the vocabulary.
    let h = Tensor::ones((3, 4), DType::F32, &cpu).unwrap();
    let head = Tensor::ones((10, 4), DType::F32, &cpu).unwrap();
    let t = Tensor::new(&[1u32, 10, 2], &cpu).unwrap();
    let e = bwb::kernels::cross_entropy::cross_entropy_sum(&h, &head, &t, None, 2).unwrap_err();
    assert!(e.to_string().contains("target id 10"), "{e}");
    // 4-bit storage shorter than its shape: an error, never a read past the buffer.
    let one_block = vec![0u8; 18];
    let storage =
        QStorage::from_data(std::borrow::Cow::Owned(one_block), &cpu, GgmlDType::Q4_0).unwrap();
    let qt = QTensor::new(storage, (2, 32)).unwrap();
    let e = bwb::kernels::dequant::dequantize(&qt, DType::F32).unwrap_err();
    assert!(e.to_string().contains("blocks"), "{e}");
    // Attention with mismatched key and value shapes.
    let q = Tensor::zeros((1, 2, 3, 8), DType::F32, &cpu).unwrap();
    let k = Tensor::zeros((1, 1, 4, 8), DType::F32, &cpu).unwrap();
    let v = Tensor::zeros((1, 1, 5, 8), DType::F32, &cpu).unwrap();
    let qp = Tensor::new(&[[0i64, 1, 2]], &cpu).unwrap();
    let kp = Tensor::new(&[[0i64, 1, 2, 3]], &cpu).unwrap();
    assert!(bwb::kernels::attention::attention(&q, &k, &v, &qp, &kp, None, 1.0, None).is_err());
}

#[test]
fn bench_kernels_rejects_zero_tokens_with_a_usage_error() {
    let p = crate::common::Project::new();
    let run = p.bwb(&["bench", "kernels", "--tokens", "0"]);
    let err = run.stderr();
    assert_eq!(run.code(), 2, "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("error:") && first.contains("--tokens"),
        "{err}"
    );
}

#[test]
fn kv_span_accepts_contiguous_and_cache_views_only() {
    use bwb::kernels::attention::kv_span;
    use candle_core::{DType, Tensor};
    let buf = Tensor::zeros((2, 3, 10, 4), DType::F32, &Device::Cpu).unwrap();
    // Contiguous: rows T apart.
    assert_eq!(kv_span(buf.layout()), Some((0, 240, 10)));
    // The first 7 slots of the cache: rows 10 apart, ending after row 7 of the last head.
    let view = buf.narrow(2, 0, 7).unwrap();
    assert_eq!(kv_span(view.layout()), Some((0, 5 * 40 + 28, 10)));
    // Not that layout: a transposed view, a slice of the head dimension, an empty tensor.
    assert_eq!(kv_span(buf.transpose(2, 3).unwrap().layout()), None);
    assert_eq!(kv_span(buf.narrow(3, 0, 2).unwrap().layout()), None);
    assert_eq!(kv_span(buf.narrow(2, 0, 0).unwrap().layout()), None);
    // A window that does not start at slot 0 starts later in memory, rows still 10 apart.
    let late = buf.narrow(2, 2, 5).unwrap();
    assert_eq!(kv_span(late.layout()), Some((8, 8 + 5 * 40 + 20, 10)));
}
