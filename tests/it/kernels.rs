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
