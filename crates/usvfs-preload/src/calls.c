/* Entry points whose calling convention Rust cannot express, or that must
 * leave the caller's frame untouched: syscall(2)'s variadic registers,
 * dlopen's return address (glibc finds the caller's RUNPATH and namespace by
 * it), vfork's shared stack; and glob/wordexp, which glibc runs on internal
 * directory calls no preload can reach. */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <link.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <wordexp.h>

/* Rust side (hooks/calls.rs). */
int usvfs_view_active(void);
const char *usvfs_dl_path(const char *file);

#define HIDDEN __attribute__((visibility("hidden")))

typedef long (*syscall_fn)(long, ...);
typedef int (*glob_fn)(const char *, int, int (*)(const char *, int), glob_t *);
typedef int (*wordexp_fn)(const char *, wordexp_t *, int);
typedef void *(*dlopen_fn)(const char *, int);
typedef void *(*dlmopen_fn)(Lmid_t, const char *, int);

static syscall_fn real_syscall_p;
static glob_fn real_glob_p;
static wordexp_fn real_wordexp_p;
static dlopen_fn real_dlopen_p;
static dlmopen_fn real_dlmopen_p;
HIDDEN void *usvfs_real_vfork;

static void *next(const char *name) {
    return dlsym(RTLD_NEXT, name);
}

typedef void *(*finder_fn)(const void *, const char *);

/* Called by the library's constructor with the Rust side's search of the
 * symbol tables (`find`, given `ctx`; NULL: dlsym): no hook resolves a
 * symbol later (the dynamic linker is neither fork- nor signal-safe). Lazy
 * fallbacks below cover calls that arrive before it. */
void usvfs_calls_init(finder_fn find, const void *ctx) {
#define FIND(name) (find ? find(ctx, name) : next(name))
    real_syscall_p = (syscall_fn)FIND("syscall");
    real_glob_p = (glob_fn)FIND("glob");
    real_wordexp_p = (wordexp_fn)FIND("wordexp");
    real_dlopen_p = (dlopen_fn)FIND("dlopen");
    real_dlmopen_p = (dlmopen_fn)FIND("dlmopen");
    usvfs_real_vfork = FIND("vfork");
    if (!usvfs_real_vfork) usvfs_real_vfork = FIND("fork");
#undef FIND
}

#define REAL(p, name) ((p) ? (p) : ((p) = (__typeof__(p))next(name)))

/* ------------------------------------------------------------------ syscall */

long usvfs_real_syscall(long nr, long a, long b, long c, long d, long e, long f) {
    syscall_fn s = REAL(real_syscall_p, "syscall");
    if (!s) {
        errno = ENOSYS;
        return -1;
    }
    return s(nr, a, b, c, d, e, f);
}

int usvfs_syscall_route(long nr, long a, long b, long c, long d, long e, long f, long *out);

/* File-system calls go through the same hooks as their libc wrappers
 * (routed in Rust, which calls them directly: a program may define a
 * function of the same name itself, as gnulib's renameat2 in GNU patch,
 * which calls syscall() again). Every other number, and a NULL path, reaches
 * the real syscall() with all six registers as given. */
long syscall(long nr, ...) {
    va_list ap;
    va_start(ap, nr);
    long a = va_arg(ap, long), b = va_arg(ap, long), c = va_arg(ap, long);
    long d = va_arg(ap, long), e = va_arg(ap, long), f = va_arg(ap, long);
    va_end(ap);
    long r;
    /* The hooks make their own cheap exits (no view yet, an internal
     * section, a path outside every destination). */
    if (usvfs_syscall_route(nr, a, b, c, d, e, f, &r)) return r;
    return usvfs_real_syscall(nr, a, b, c, d, e, f);
}

/* --------------------------------------------------------------------- glob */

/* glibc's glob reads directories through internal calls; GLOB_ALTDIRFUNC
 * makes it use ours (the hooked opendir/readdir/closedir/stat/lstat), so it
 * lists the merged view. A caller's own GLOB_ALTDIRFUNC is left alone. */
static int view_glob(const char *pattern, int flags, int (*errfunc)(const char *, int), glob_t *pglob) {
    glob_fn real = REAL(real_glob_p, "glob");
    if (!real) {
        errno = ENOSYS;
        return GLOB_ABORTED;
    }
    if ((flags & GLOB_ALTDIRFUNC) || !pglob || !usvfs_view_active())
        return real(pattern, flags, errfunc, pglob);
    /* Our stream functions take glibc's DIR or our own stream alike. */
    pglob->gl_closedir = (void (*)(void *))(void (*)(void))closedir;
    pglob->gl_readdir = (struct dirent * (*)(void *))(void (*)(void))readdir;
    pglob->gl_opendir = (void *(*)(const char *))(void (*)(void))opendir;
    pglob->gl_lstat = (int (*)(const char *, struct stat *))lstat;
    pglob->gl_stat = (int (*)(const char *, struct stat *))stat;
    int r = real(pattern, flags | GLOB_ALTDIRFUNC, errfunc, pglob);
    /* The caller asked for no ALTDIRFUNC: a later GLOB_APPEND call must not
     * find one it did not set. */
    pglob->gl_flags &= ~GLOB_ALTDIRFUNC;
    return r;
}

int glob(const char *pattern, int flags, int (*errfunc)(const char *, int), glob_t *pglob) {
    return view_glob(pattern, flags, errfunc, pglob);
}

/* On 64-bit Linux glob64 is glob (one function, two names). */
#if __SIZEOF_POINTER__ == 8
int glob64(const char *pattern, int flags, int (*errfunc)(const char *, int), glob64_t *pglob) {
    return view_glob(pattern, flags, errfunc, (glob_t *)pglob);
}
#endif

/* ------------------------------------------------------------------ wordexp */

/* glibc's wordexp runs pathname expansion through its internal glob. Words
 * made only of literal text and quotes are expanded here, through the
 * hooked glob; any other input (parameter, arithmetic or command
 * substitution, a leading tilde, characters wordexp rejects) goes to the
 * real wordexp, whose globbing then sees the real disk. */

struct words {
    char **v;
    size_t n, cap;
};

static int push(struct words *w, char *s) {
    if (!s) return -1;
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 8;
        char **v = realloc(w->v, cap * sizeof *v);
        if (!v) {
            free(s);
            return -1;
        }
        w->v = v;
        w->cap = cap;
    }
    w->v[w->n++] = s;
    return 0;
}

static void drop_words(struct words *w) {
    for (size_t i = 0; i < w->n; i++) free(w->v[i]);
    free(w->v);
}

/* Splits `s` into words. For each: `lit` is the word after quote removal,
 * `pat` the glob pattern (quoted characters escaped), `magic` whether an
 * unquoted *, ? or [ is in it. Returns 1 when the input is out of this
 * simple subset, -1 on a memory error, 0 when split. */
static int expand_simple(const char *s, struct words *out) {
    size_t len = strlen(s);
    char *lit = malloc(len + 1), *pat = malloc(2 * len + 1);
    int rc = 0;
    if (!lit || !pat) {
        rc = -1;
        goto done;
    }
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == '\t') p++;
        if (!*p) break;
        size_t nl = 0, np = 0;
        int magic = 0;
        if (*p == '~') {
            rc = 1;
            goto done;
        }
        while (*p && *p != ' ' && *p != '\t') {
            char ch = *p;
            if (strchr("$`\n|&;<>(){}", ch)) {
                rc = 1;
                goto done;
            }
            if (ch == '\\') {
                if (!p[1]) {
                    rc = 1;
                    goto done;
                }
                lit[nl++] = p[1];
                pat[np++] = '\\';
                pat[np++] = p[1];
                p += 2;
            } else if (ch == '\'') {
                const char *q = strchr(p + 1, '\'');
                if (!q) {
                    rc = 1;
                    goto done;
                }
                for (p++; p < q; p++) {
                    lit[nl++] = *p;
                    pat[np++] = '\\';
                    pat[np++] = *p;
                }
                p = q + 1;
            } else if (ch == '"') {
                for (p++; *p && *p != '"'; p++) {
                    if (*p == '$' || *p == '`') {
                        rc = 1;
                        goto done;
                    }
                    if (*p == '\\' && p[1] && strchr("\\\"\n", p[1])) p++;
                    lit[nl++] = *p;
                    pat[np++] = '\\';
                    pat[np++] = *p;
                }
                /* glibc's wordexp takes a missing closing double quote. */
                if (*p) p++;
            } else {
                if (ch == '*' || ch == '?' || ch == '[') magic = 1;
                lit[nl++] = ch;
                pat[np++] = ch;
                p++;
            }
        }
        lit[nl] = pat[np] = 0;
        if (!magic) {
            if (push(out, strdup(lit))) {
                rc = -1;
                goto done;
            }
            continue;
        }
        glob_t g;
        memset(&g, 0, sizeof g);
        int r = view_glob(pat, 0, NULL, &g);
        if (r == 0) {
            for (size_t i = 0; i < g.gl_pathc; i++)
                if (push(out, strdup(g.gl_pathv[i]))) {
                    globfree(&g);
                    rc = -1;
                    goto done;
                }
        }
        globfree(&g);
        if (r == GLOB_NOMATCH) {
            /* As the shell: an unmatched pattern stays, quotes removed. */
            if (push(out, strdup(lit))) {
                rc = -1;
                goto done;
            }
        } else if (r != 0) {
            rc = -1;
            goto done;
        }
    }
done:
    free(lit);
    free(pat);
    return rc;
}

int wordexp(const char *s, wordexp_t *we, int flags) {
    wordexp_fn real = REAL(real_wordexp_p, "wordexp");
    if (!real) return WRDE_NOSPACE;
    if (!s || !we || !usvfs_view_active()) return real(s, we, flags);
    struct words w = {0};
    int rc = expand_simple(s, &w);
    if (rc != 0) {
        drop_words(&w);
        return rc > 0 ? real(s, we, flags) : WRDE_NOSPACE;
    }
    if (flags & WRDE_REUSE) {
        wordfree(we);
        flags &= ~WRDE_REUSE;
    }
    /* The same array layout wordexp builds (we_offs NULLs first with
     * WRDE_DOOFFS, appended to with WRDE_APPEND), so wordfree frees it. */
    size_t offs = (flags & WRDE_DOOFFS) ? we->we_offs : 0;
    size_t have = (flags & WRDE_APPEND) ? we->we_wordc : 0;
    if (!(flags & WRDE_APPEND)) {
        we->we_wordv = NULL;
        we->we_wordc = 0;
        if (!(flags & WRDE_DOOFFS)) we->we_offs = 0;
    }
    char **v = realloc(we->we_wordv, (offs + have + w.n + 1) * sizeof *v);
    if (!v) {
        drop_words(&w);
        return WRDE_NOSPACE;
    }
    if (!(flags & WRDE_APPEND))
        for (size_t i = 0; i < offs; i++) v[i] = NULL;
    for (size_t i = 0; i < w.n; i++) v[offs + have + i] = w.v[i];
    v[offs + have + w.n] = NULL;
    we->we_wordv = v;
    we->we_wordc = have + w.n;
    free(w.v);
    return 0;
}

/* ------------------------------------------------------------------- dlopen */

struct soname_query {
    const char *name;
    int found;
};

static int soname_matches(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    struct soname_query *q = data;
    const char *slash = info->dlpi_name ? strrchr(info->dlpi_name, '/') : NULL;
    if (slash && strcmp(slash + 1, q->name) == 0) return q->found = 1;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        if (info->dlpi_phdr[i].p_type != PT_DYNAMIC) continue;
        const ElfW(Dyn) *dyn = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
        ElfW(Addr) strtab = 0;
        ElfW(Xword) soname = (ElfW(Xword))-1;
        for (; dyn->d_tag != DT_NULL; dyn++) {
            if (dyn->d_tag == DT_STRTAB) strtab = dyn->d_un.d_ptr;
            if (dyn->d_tag == DT_SONAME) soname = dyn->d_un.d_val;
        }
        if (!strtab || soname == (ElfW(Xword))-1) break;
        /* The loader relocates the dynamic section in place on most
         * architectures, not on all. */
        if (strtab < info->dlpi_addr) strtab += info->dlpi_addr;
        if (strcmp((const char *)strtab + soname, q->name) == 0) return q->found = 1;
        break;
    }
    return 0;
}

/* A bare name already loaded (matched by file name or SONAME, as ld.so
 * matches it first): the loader returns that object, the view has no say. */
int usvfs_dl_loaded(const char *name) {
    struct soname_query q = {name, 0};
    dl_iterate_phdr(soname_matches, &q);
    return q.found;
}

/* Tail calls: glibc's dlopen takes the caller's link map (RUNPATH, $ORIGIN,
 * namespace) from its return address, which must stay the program's. */
__attribute__((optimize("O2", "optimize-sibling-calls")))
void *dlopen(const char *file, int mode) {
    const char *p = usvfs_dl_path(file);
    dlopen_fn real = REAL(real_dlopen_p, "dlopen");
    return real(p, mode);
}

__attribute__((optimize("O2", "optimize-sibling-calls")))
void *dlmopen(Lmid_t lmid, const char *file, int mode) {
    const char *p = usvfs_dl_path(file);
    dlmopen_fn real = REAL(real_dlmopen_p, "dlmopen");
    return real(lmid, p, mode);
}

/* -------------------------------------------------------------------- vfork */

/* A vfork child runs on its parent's memory and thread: our tables must not
 * change under the parent. The trampoline notes the parent's pid in this
 * thread's storage, then jumps to the real vfork with the stack exactly as
 * the caller left it (a C wrapper's frame would be clobbered by the child). */
static __thread pid_t vfork_parent __attribute__((tls_model("initial-exec")));
static __thread int vfork_chdir __attribute__((tls_model("initial-exec")));

HIDDEN void usvfs_vfork_prepare(void) {
    if (!usvfs_real_vfork) usvfs_calls_init(NULL, NULL);
    vfork_parent = getpid();
    vfork_chdir = 0;
}

/* 0: not a vfork child; 1: a vfork child; 2: one that changed directory. */
int usvfs_vfork_state(void) {
    pid_t p = vfork_parent;
    if (__builtin_expect(p == 0, 1)) return 0;
    if (getpid() == p) {
        /* The parent runs again: its child has exec'd or exited. */
        vfork_parent = 0;
        vfork_chdir = 0;
        return 0;
    }
    return vfork_chdir ? 2 : 1;
}

void usvfs_vfork_chdir(void) {
    vfork_chdir = 1;
}

/* fork copies memory: the child is a process of its own. */
void usvfs_vfork_forget(void) {
    vfork_parent = 0;
    vfork_chdir = 0;
}

#if defined(__x86_64__)
__asm__(".text\n"
        ".globl vfork\n"
        ".type vfork,@function\n"
        "vfork:\n"
        "    sub $8, %rsp\n"
        "    call usvfs_vfork_prepare\n"
        "    add $8, %rsp\n"
        "    jmp *usvfs_real_vfork(%rip)\n"
        ".size vfork, .-vfork\n");
#elif defined(__aarch64__)
__asm__(".text\n"
        ".globl vfork\n"
        ".type vfork,%function\n"
        "vfork:\n"
        "    stp x29, x30, [sp, #-16]!\n"
        "    mov x29, sp\n"
        "    bl usvfs_vfork_prepare\n"
        "    ldp x29, x30, [sp], #16\n"
        "    adrp x16, usvfs_real_vfork\n"
        "    ldr x16, [x16, #:lo12:usvfs_real_vfork]\n"
        "    br x16\n"
        ".size vfork, .-vfork\n");
#else
int usvfs_vfork_unsupported;
#endif

/* ------------------------------------------------------------ stack switch */

/* Calls f(arg) with the stack pointer at `top` (16-byte aligned), for hook
 * bodies on threads whose own stack is too small for them. Frame-pointer
 * based CFI, so debuggers and backtraces walk through it. */
#if defined(__x86_64__)
__asm__(".text\n"
        ".globl usvfs_call_on_stack\n"
        ".hidden usvfs_call_on_stack\n"
        ".type usvfs_call_on_stack,@function\n"
        "usvfs_call_on_stack:\n"
        "    .cfi_startproc\n"
        "    push %rbp\n"
        "    .cfi_def_cfa_offset 16\n"
        "    .cfi_offset %rbp, -16\n"
        "    mov %rsp, %rbp\n"
        "    .cfi_def_cfa_register %rbp\n"
        "    mov %rdx, %rsp\n"
        "    call *%rsi\n"
        "    mov %rbp, %rsp\n"
        "    pop %rbp\n"
        "    .cfi_def_cfa %rsp, 8\n"
        "    ret\n"
        "    .cfi_endproc\n"
        ".size usvfs_call_on_stack, .-usvfs_call_on_stack\n");
int usvfs_can_switch_stack(void) { return 1; }
#elif defined(__aarch64__)
__asm__(".text\n"
        ".globl usvfs_call_on_stack\n"
        ".hidden usvfs_call_on_stack\n"
        ".type usvfs_call_on_stack,%function\n"
        "usvfs_call_on_stack:\n"
        "    .cfi_startproc\n"
        "    stp x29, x30, [sp, #-16]!\n"
        "    .cfi_def_cfa_offset 16\n"
        "    .cfi_offset x29, -16\n"
        "    .cfi_offset x30, -8\n"
        "    mov x29, sp\n"
        "    .cfi_def_cfa_register x29\n"
        "    mov sp, x2\n"
        "    blr x1\n"
        "    mov sp, x29\n"
        "    ldp x29, x30, [sp], #16\n"
        "    .cfi_def_cfa sp, 0\n"
        "    ret\n"
        "    .cfi_endproc\n"
        ".size usvfs_call_on_stack, .-usvfs_call_on_stack\n");
int usvfs_can_switch_stack(void) { return 1; }
#else
void usvfs_call_on_stack(void *arg, void (*f)(void *), void *top) {
    (void)top;
    f(arg);
}
int usvfs_can_switch_stack(void) { return 0; }
#endif
