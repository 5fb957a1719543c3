/* Windows benchmark workloads, run under Wine the same way on every system.
 *   workload.exe walk DIR    FindFirstFile/FindNextFile every directory and
 *                            GetFileAttributesEx every entry
 *   workload.exe read DIR    the same walk, and CreateFile + ReadFile every file
 *   workload.exe attrs LIST  GetFileAttributesEx on each path of LIST (one
 *                            Windows path a line, UTF-8, the root first); the
 *                            list is read before the clock starts
 *   workload.exe nop         nothing (starts the prefix's services first)
 * Prints a checksum line (entries, bytes) so the systems can be compared, a
 * hash of the relative names seen (order-independent), and the time the work
 * itself took (elapsed_ns, QueryPerformanceCounter), Wine's start excluded.
 * Built with x86_64-w64-mingw32-gcc; wide-character API throughout. */
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

static long long entries, bytes;
static unsigned long long names; /* sum of FNV-1a hashes of relative paths */
static int do_read;
static char buf[65536];
static size_t root_len;

static unsigned long long fnv(const wchar_t *s) {
    unsigned long long h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned short)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static void fail(const char *what, const wchar_t *path) {
    fprintf(stderr, "%s failed (error %lu): %ls\n", what, GetLastError(), path);
    exit(1);
}

static void walk(wchar_t *path, size_t len) {
    WIN32_FIND_DATAW fd;
    wcscpy(path + len, L"\\*");
    HANDLE h = FindFirstFileW(path, &fd);
    if (h == INVALID_HANDLE_VALUE) fail("FindFirstFile", path);
    do {
        if (!wcscmp(fd.cFileName, L".") || !wcscmp(fd.cFileName, L"..")) continue;
        size_t n = wcslen(fd.cFileName);
        path[len] = L'\\';
        memcpy(path + len + 1, fd.cFileName, (n + 1) * sizeof(wchar_t));
        WIN32_FILE_ATTRIBUTE_DATA a;
        if (!GetFileAttributesExW(path, GetFileExInfoStandard, &a)) fail("GetFileAttributesEx", path);
        entries++;
        names += fnv(path + root_len);
        if (a.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY) {
            walk(path, len + 1 + n);
        } else if (do_read) {
            HANDLE f = CreateFileW(path, GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING,
                                   FILE_ATTRIBUTE_NORMAL, NULL);
            if (f == INVALID_HANDLE_VALUE) fail("CreateFile", path);
            DWORD got;
            for (;;) {
                if (!ReadFile(f, buf, sizeof buf, &got, NULL)) fail("ReadFile", path);
                if (got == 0) break;
                bytes += got;
            }
            CloseHandle(f);
        } else {
            bytes += ((long long)a.nFileSizeHigh << 32) | a.nFileSizeLow;
        }
    } while (FindNextFileW(h, &fd));
    if (GetLastError() != ERROR_NO_MORE_FILES) fail("FindNextFile", path);
    FindClose(h);
    path[len] = 0;
}

/* Reads LIST (UTF-8, one path a line) into an array of wide strings. */
static wchar_t **read_list(const wchar_t *list, size_t *count) {
    HANDLE f = CreateFileW(list, GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING, 0, NULL);
    if (f == INVALID_HANDLE_VALUE) fail("CreateFile", list);
    DWORD size = GetFileSize(f, NULL), got;
    char *text = malloc(size + 1);
    if (!ReadFile(f, text, size, &got, NULL) || got != size) fail("ReadFile", list);
    CloseHandle(f);
    text[size] = 0;
    size_t cap = 1024, n = 0;
    wchar_t **out = malloc(cap * sizeof *out);
    for (char *line = text; *line;) {
        char *end = strchr(line, '\n');
        if (end) *end = 0;
        size_t l = strlen(line);
        if (l && line[l - 1] == '\r') line[--l] = 0;
        if (l) {
            int w = MultiByteToWideChar(CP_UTF8, 0, line, -1, NULL, 0);
            wchar_t *p = malloc(w * sizeof(wchar_t));
            MultiByteToWideChar(CP_UTF8, 0, line, -1, p, w);
            if (n == cap) out = realloc(out, (cap *= 2) * sizeof *out);
            out[n++] = p;
        }
        if (!end) break;
        line = end + 1;
    }
    free(text);
    *count = n;
    return out;
}

int wmain(int argc, wchar_t **argv) {
    if (argc == 2 && !wcscmp(argv[1], L"nop")) return 0;
    if (argc < 3) {
        fprintf(stderr, "usage: workload.exe walk|read DIR | attrs LIST\n");
        return 2;
    }
    static wchar_t path[32768];
    LARGE_INTEGER freq, t0, t1;
    QueryPerformanceFrequency(&freq);
    if (!wcscmp(argv[1], L"walk") || !wcscmp(argv[1], L"read")) {
        do_read = !wcscmp(argv[1], L"read");
        wcscpy(path, argv[2]);
        root_len = wcslen(path);
        QueryPerformanceCounter(&t0);
        walk(path, root_len);
        QueryPerformanceCounter(&t1);
    } else if (!wcscmp(argv[1], L"attrs")) {
        size_t n;
        wchar_t **list = read_list(argv[2], &n);
        /* Names are hashed from the path's third component on, so two roots
           of different lengths give the same hash: the list's first line is
           the root itself. */
        size_t skip = n ? wcslen(list[0]) : 0;
        QueryPerformanceCounter(&t0);
        for (size_t i = 1; i < n; i++) {
            WIN32_FILE_ATTRIBUTE_DATA a;
            if (!GetFileAttributesExW(list[i], GetFileExInfoStandard, &a)) fail("GetFileAttributesEx", list[i]);
            entries++;
            names += fnv(list[i] + skip);
            bytes += ((long long)a.nFileSizeHigh << 32) | a.nFileSizeLow;
        }
        QueryPerformanceCounter(&t1);
    } else {
        return 2;
    }
    long long ns = (long long)((double)(t1.QuadPart - t0.QuadPart) * 1e9 / (double)freq.QuadPart);
    printf("entries=%lld bytes=%lld\n", entries, bytes);
    printf("names=%016llx\n", names);
    printf("elapsed_ns=%lld\n", ns);
    return 0;
}
