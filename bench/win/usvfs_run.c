/* Drives the original usvfs (ModOrganizer2's usvfs_x64.dll, as shipped in the
 * py-usvfs 0.2.0 wheel) through its C API, so the benchmark can run a Windows
 * program in its view under Wine:
 *
 *   usvfs_run.exe DLL [--link SRC DEST]... [--create SRC DEST] -- PROGRAM [ARGS...]
 *
 * --link adds a recursive static directory link (later links win), --create
 * also redirects file creation below DEST to SRC. Prints the time the links
 * took (setup_ns=) on stderr and returns the program's exit code.
 * The DLL is loaded at run time (LoadLibrary + GetProcAddress), so no import
 * library is needed. Signatures follow usvfs.h of that release (mid 2019). */
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#define LINKFLAG_CREATETARGET 0x4
#define LINKFLAG_RECURSIVE 0x8
#define LOGLEVEL_ERROR 3     /* enum class LogLevel : uint8_t { Debug, Info, Warning, Error } */
#define CRASHDUMPS_NONE 0    /* enum class CrashDumpsType : uint8_t { None, ... } */

typedef void(WINAPI *InitParameters_t)(void *params, const char *instance, BOOLEAN debug, unsigned char level,
                                       unsigned char dumps, const char *dump_path);
typedef void(WINAPI *InitLogging_t)(BOOLEAN to_local);
typedef BOOL(WINAPI *CreateVFS_t)(const void *params);
typedef void(WINAPI *DisconnectVFS_t)(void);
typedef BOOL(WINAPI *Link_t)(LPCWSTR source, LPCWSTR destination, unsigned int flags);
typedef BOOLEAN(WINAPI *GetLogMessages_t)(LPSTR buffer, size_t size, BOOLEAN blocking);
typedef BOOL(WINAPI *CreateProcessHooked_t)(LPCWSTR app, LPWSTR cmdline, LPSECURITY_ATTRIBUTES pa,
                                            LPSECURITY_ATTRIBUTES ta, BOOL inherit, DWORD flags, LPVOID env,
                                            LPCWSTR cwd, LPSTARTUPINFOW si, LPPROCESS_INFORMATION pi);

static GetLogMessages_t get_log;

/* Prints what usvfs logged (its own messages and its hooked processes'). */
static void print_log(void) {
    static char line[4096];
    while (get_log && get_log(line, sizeof line, FALSE)) fprintf(stderr, "usvfs: %s\n", line);
}

static void *need(HMODULE dll, const char *name) {
    void *p = (void *)GetProcAddress(dll, name);
    if (!p) {
        fprintf(stderr, "usvfs_run: the DLL does not export %s\n", name);
        exit(125);
    }
    return p;
}

/* Appends ARG to CMD, quoted by the rules CommandLineToArgvW reverses. */
static void append_arg(wchar_t *cmd, const wchar_t *arg) {
    size_t n = wcslen(cmd);
    if (n) cmd[n++] = L' ';
    if (*arg && !wcspbrk(arg, L" \t\"")) {
        wcscpy(cmd + n, arg);
        return;
    }
    cmd[n++] = L'"';
    for (const wchar_t *p = arg;; p++) {
        size_t slashes = 0;
        while (*p == L'\\') p++, slashes++;
        if (!*p) {
            for (size_t i = 0; i < slashes * 2; i++) cmd[n++] = L'\\';
            break;
        }
        if (*p == L'"') {
            for (size_t i = 0; i < slashes * 2 + 1; i++) cmd[n++] = L'\\';
        } else {
            for (size_t i = 0; i < slashes; i++) cmd[n++] = L'\\';
        }
        cmd[n++] = *p;
    }
    cmd[n++] = L'"';
    cmd[n] = 0;
}

int wmain(int argc, wchar_t **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: usvfs_run.exe DLL [--link SRC DEST]... [--create SRC DEST] -- PROGRAM [ARGS...]\n");
        return 125;
    }
    HMODULE dll = LoadLibraryW(argv[1]);
    if (!dll) {
        fprintf(stderr, "usvfs_run: cannot load %ls (error %lu)\n", argv[1], GetLastError());
        return 125;
    }
    InitParameters_t init_params = (InitParameters_t)need(dll, "USVFSInitParameters");
    InitLogging_t init_logging = (InitLogging_t)need(dll, "InitLogging");
    CreateVFS_t create_vfs = (CreateVFS_t)need(dll, "CreateVFS");
    DisconnectVFS_t disconnect = (DisconnectVFS_t)need(dll, "DisconnectVFS");
    Link_t link_dir = (Link_t)need(dll, "VirtualLinkDirectoryStatic");
    CreateProcessHooked_t create_hooked = (CreateProcessHooked_t)need(dll, "CreateProcessHooked");

    get_log = (GetLogMessages_t)need(dll, "GetLogMessages");
    const char *debug = getenv("USVFS_RUN_DEBUG");
    /* USVFSParameters is ~460 bytes in this release; USVFSInitParameters
       fills it, we only pass it on. */
    static unsigned char params[4096];
    init_params(params, "usvfs_bench", debug ? TRUE : FALSE, debug ? 0 : LOGLEVEL_ERROR, CRASHDUMPS_NONE, "");
    init_logging(FALSE);
    if (!create_vfs(params)) {
        fprintf(stderr, "usvfs_run: CreateVFS failed (error %lu)\n", GetLastError());
        return 125;
    }

    LARGE_INTEGER freq, t0, t1;
    QueryPerformanceFrequency(&freq);
    QueryPerformanceCounter(&t0);
    int i = 2;
    for (; i < argc && wcscmp(argv[i], L"--"); i += 3) {
        unsigned int flags = LINKFLAG_RECURSIVE;
        if (!wcscmp(argv[i], L"--create")) {
            flags |= LINKFLAG_CREATETARGET;
        } else if (wcscmp(argv[i], L"--link")) {
            fprintf(stderr, "usvfs_run: unknown option %ls\n", argv[i]);
            return 125;
        }
        if (i + 2 >= argc) {
            fprintf(stderr, "usvfs_run: %ls needs SRC DEST\n", argv[i]);
            return 125;
        }
        if (!link_dir(argv[i + 1], argv[i + 2], flags)) {
            print_log();
            fprintf(stderr, "usvfs_run: linking %ls to %ls failed (error %lu)\n", argv[i + 1], argv[i + 2],
                    GetLastError());
            return 125;
        }
    }
    QueryPerformanceCounter(&t1);
    fprintf(stderr, "setup_ns=%lld\n", (long long)((double)(t1.QuadPart - t0.QuadPart) * 1e9 / freq.QuadPart));
    if (i + 1 >= argc) {
        fprintf(stderr, "usvfs_run: no program after --\n");
        return 125;
    }

    static wchar_t cmd[32768];
    for (int j = i + 1; j < argc; j++) append_arg(cmd, argv[j]);
    STARTUPINFOW si;
    PROCESS_INFORMATION pi;
    memset(&si, 0, sizeof si);
    memset(&pi, 0, sizeof pi);
    si.cb = sizeof si;
    si.dwFlags = STARTF_USESTDHANDLES;
    si.hStdInput = GetStdHandle(STD_INPUT_HANDLE);
    si.hStdOutput = GetStdHandle(STD_OUTPUT_HANDLE);
    si.hStdError = GetStdHandle(STD_ERROR_HANDLE);
    if (!create_hooked(NULL, cmd, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi)) {
        print_log();
        fprintf(stderr, "usvfs_run: CreateProcessHooked failed for %ls (error %lu)\n", cmd, GetLastError());
        disconnect();
        return 126;
    }
    WaitForSingleObject(pi.hProcess, INFINITE);
    DWORD code = 1;
    GetExitCodeProcess(pi.hProcess, &code);
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
    if (debug) print_log();
    disconnect();
    return (int)code;
}
