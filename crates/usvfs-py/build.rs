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
    println!("cargo:rerun-if-env-changed=USVFS_BUNDLE_FROM");
    if std::env::var_os("PYO3_BUILD_EXTENSION_MODULE").is_none()
        && std::env::var_os("USVFS_BUNDLE").is_none()
    {
        return;
    }
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().parent().unwrap().to_path_buf();
    let bin = root.join("python").join("usvfs").join("_bin");
    std::fs::create_dir_all(&bin).unwrap();
    // `USVFS_BUNDLE_FROM=DIR`: take the binaries a workspace build already
    // made (`make wheel`), instead of building them again.
    if let Some(from) = std::env::var_os("USVFS_BUNDLE_FROM") {
        let from = PathBuf::from(from);
        for f in ["libusvfs_preload.so", "usvfs"] {
            println!("cargo:rerun-if-changed={}", from.join(f).display());
            std::fs::copy(from.join(f), bin.join(f))
                .unwrap_or_else(|e| panic!("copying {}: {e}", from.join(f).display()));
            strip_debug_info(&bin.join(f));
        }
        return;
    }
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
        // The wheel ships no debug info.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "0")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo")
        .status()
        .expect("running cargo to build the preload library and the CLI");
    assert!(
        status.success(),
        "building usvfs-preload and usvfs-cli failed"
    );
    for f in ["libusvfs_preload.so", "usvfs"] {
        std::fs::copy(target.join("release").join(f), bin.join(f)).unwrap();
    }
}

/// Removes the debug info of a binary copied into the package (`strip -g`,
/// from binutils, which the C toolchain the build needs brings).
fn strip_debug_info(path: &std::path::Path) {
    let status = Command::new("strip")
        .arg("--strip-debug")
        .arg(path)
        .status()
        .expect("running strip (binutils) on the bundled binaries");
    assert!(
        status.success(),
        "strip --strip-debug {} failed",
        path.display()
    );
}
