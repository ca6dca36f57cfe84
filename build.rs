//! Embed an rpath to libtorch so `avr` and the test binaries run without `LD_LIBRARY_PATH`.
//!
//! torch-sys links `libtorch_cpu.so`/`libc10.so` but records no rpath for dependents
//! (tch-rs issues #767, #907). `rustc-link-arg` applies to this package's own binaries,
//! tests and examples, which is exactly what we need. The nvidia `cu13/lib` directory holds
//! `libcudart.so.13`/`libcupti.so.13` that `libtorch_cpu.so` needs (its own RPATH covers
//! that, but listing it keeps `ldd` honest).
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(libtorch) = std::env::var_os("LIBTORCH").map(PathBuf::from) else {
        return; // torch-sys will explain what is missing.
    };
    let lib = libtorch.join("lib");
    let nvidia = libtorch.join("..").join("nvidia").join("cu13").join("lib");
    for dir in [lib, nvidia] {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
}
