// The wheel ships the preload library and the `usvfs` command beside the
// extension. When maturin builds the package (`pip install .`), build them
// with a nested cargo into a separate target directory and copy them into the
// package sources, where maturin picks them up.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    // maturin sets PYO3_BUILD_EXTENSION_MODULE; plain `cargo build` does not.
    println!("cargo:rerun-if-env-changed=PYO3_BUILD_EXTENSION_MODULE");
    println!("cargo:rerun-if-env-changed=USVFS_BUNDLE");
    if std::env::var_os("PYO3_BUILD_EXTENSION_MODULE").is_none()
        && std::env::var_os("USVFS_BUNDLE").is_none()
    {
        return;
    }
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().parent().unwrap().to_path_buf();
    let target = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("bundle");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "-p",
            "usvfs-preload",
            "-p",
            "usvfs-cli",
            "--target-dir",
        ])
        .arg(&target)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("running cargo to build the preload library and the CLI");
    assert!(
        status.success(),
        "building usvfs-preload and usvfs-cli failed"
    );
    let bin = root.join("python").join("usvfs").join("_bin");
    std::fs::create_dir_all(&bin).unwrap();
    for f in ["libusvfs_preload.so", "usvfs"] {
        std::fs::copy(target.join("release").join(f), bin.join(f)).unwrap();
    }
}
