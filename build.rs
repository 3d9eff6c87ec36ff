// Link-time glue for the `cuda` feature only (CI and CPU builds skip all of it).
//
// candle-kernels asks for `-lcudart` without a search path. With a CUDA toolkit from PyPI
// wheels (scripts/build-cuda.sh) we answer it with a GNU ld script named libcudart.so that
// pulls in libcudart_static.a, so the binary needs no libcudart at load time and still starts
// (and says "no GPU") on a machine without CUDA. A RUNPATH lets cudarc's dlopen() of the
// driver, cuBLAS, cuBLASLt, NVRTC and cuRAND find the GPU machine's pip-installed CUDA 13
// libraries without LD_LIBRARY_PATH. Set here, not in RUSTFLAGS: a RUSTFLAGS change rebuilds
// candle-kernels (14 minutes of nvcc).
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for v in ["CUDA_HOME", "BWB_CUDART", "BWB_CUDA_RPATH"] {
        println!("cargo:rerun-if-env-changed={v}");
    }
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    compile_kernels();
    let Some(home) = std::env::var_os("CUDA_HOME").map(PathBuf::from) else {
        // A system toolkit (RunPod images) links the usual way.
        return;
    };
    let lib = home.join("lib");
    let static_rt = lib.join("libcudart_static.a");
    if std::env::var("BWB_CUDART").as_deref() != Ok("dynamic") && static_rt.exists() {
        let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
            return;
        };
        let shim = out.join("cudart-shim");
        if std::fs::create_dir_all(&shim).is_ok()
            && std::fs::write(
                shim.join("libcudart.so"),
                format!("/* GNU ld script */\nINPUT({})\n", static_rt.display()),
            )
            .is_ok()
        {
            println!("cargo:rustc-link-search=native={}", shim.display());
        }
    } else {
        println!("cargo:rustc-link-search=native={}", lib.display());
    }
    let rpath = std::env::var("BWB_CUDA_RPATH").unwrap_or_else(|_| {
        "$ORIGIN:$ORIGIN/lib:/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cu13/lib".into()
    });
    if !rpath.is_empty() {
        println!("cargo:rustc-link-arg-bins=-Wl,-rpath,{rpath}");
    }
}

/// kernels/*.cu → $OUT_DIR/kernels/*.ptx with nvcc (virtual architecture `compute_<cap>`, so
/// the driver JIT-compiles for the GPU it finds at that capability or newer).
fn compile_kernels() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let dir = out.join("kernels");
    std::fs::create_dir_all(&dir).expect("create OUT_DIR/kernels");
    let nvcc = std::env::var_os("CUDA_HOME")
        .map(|h| PathBuf::from(h).join("bin").join("nvcc"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("nvcc"));
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    // The host launches the tensor-core kernels only for targets that have them (8.0+).
    println!("cargo:rustc-env=BWB_CUDA_COMPUTE_CAP={cap}");
    let mut sources: Vec<PathBuf> = std::fs::read_dir("kernels")
        .expect("read kernels/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .collect();
    sources.sort();
    for src in sources {
        let stem = src
            .file_stem()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        let ptx = dir.join(format!("{stem}.ptx"));
        let status = std::process::Command::new(&nvcc)
            .args(["--ptx", "-O3", "-std=c++17", "-lineinfo", "-I", "kernels"])
            .arg(format!("-arch=compute_{cap}"))
            .arg("-o")
            .arg(&ptx)
            .arg(&src)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", nvcc.display()));
        assert!(status.success(), "nvcc failed on {}", src.display());
    }
}
