// Variadic C entry points (open's optional mode, execl's argument list,
// syscall's registers) cannot be defined in stable Rust; a few lines of C take
// them apart and call into Rust (calls.c also holds the frame-exact dlopen and
// vfork entry points and the glob/wordexp front ends).
fn main() {
    println!("cargo:rerun-if-changed=src/variadic.c");
    println!("cargo:rerun-if-changed=src/calls.c");
    let out = std::env::var("OUT_DIR").unwrap();
    let script = format!("{out}/variadic.ver");
    std::fs::write(&script, "{ global: open; open64; openat; openat64; __open_2; __open64_2; __openat_2; __openat64_2; execl; execlp; execle; fcntl; fcntl64; syscall; glob; glob64; wordexp; dlopen; dlmopen; vfork; };\n").unwrap();
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={script}");
    // Calls from inside the library to a function it defines (a hook calling
    // a sibling hook, syscall() routing to renameat2) reach our own, even
    // when the program defines one of that name: gnulib's renameat2 in GNU
    // patch calls syscall(), which would call it back without end.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-Bsymbolic-functions");
    // The unwinder linked in (GCC's static libgcc_eh) instead of loading
    // libgcc_s.so.1 into every hooked process: one object fewer for the
    // dynamic loader to find, map and relocate, and no libgcc_s constructor
    // (its CPU probe is slow under virtualization). Panics still unwind to
    // the hooks' catch_unwind. With --as-needed (rustc's default) the
    // DT_NEEDED entry for libgcc_s goes away.
    println!("cargo:rustc-link-lib=static:+whole-archive,-bundle=gcc_eh");
    cc::Build::new()
        .file("src/variadic.c")
        .flag("-fvisibility=default")
        .compile("usvfs_variadic");
    cc::Build::new()
        .file("src/calls.c")
        .flag("-fvisibility=default")
        .compile("usvfs_calls");
}
