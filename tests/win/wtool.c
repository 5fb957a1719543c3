/* wtool.exe: many Win32 file operations per Wine start, for tests/test_wine.py.
 *
 *   wtool.exe ROOT SCRIPT
 *
 * ROOT is a Windows directory (the parent of the game's data folder); SCRIPT a
 * UTF-8 file, one operation a line, fields separated by TABs. A path argument
 * is relative to ROOT ("data/textures/a.dds"; '/' and '\' both work), to the
 * current directory when it starts with "./", below ROOT spelled as an NT path
 * (\\?\ROOT\...) when it starts with "?/", or taken as is after a leading '@'.
 * Text arguments understand \n, \t and \\. Output (UTF-8, LF) echoes each
 * operation and prints its result: "ok", or "err N" with GetLastError's N, and
 * names relative to ROOT, never the ROOT itself, so a run on the view and a run
 * on a physically merged copy print the same bytes.
 *
 *   list DIR [PATTERN]   FindFirstFileW/FindNextFileW (default pattern *),
 *                        entries sorted by name: name, kind, size, attributes
 *   tree DIR             the same, recursively, with each file's content
 *   cat FILE             CreateFileW + ReadFile, the content escaped
 *   attr PATH            GetFileAttributesExW: attributes and size
 *   info PATH            CreateFileW (backup semantics) + GetFileInformationByHandle
 *   final PATH           GetFinalPathNameByHandleW, relative to ROOT
 *   write FILE TEXT      CREATE_ALWAYS (create or truncate) and write
 *   create FILE TEXT     CREATE_NEW
 *   append FILE TEXT     OPEN_ALWAYS + FILE_APPEND_DATA
 *   patch FILE TEXT      OPEN_EXISTING, write TEXT at offset 0, no truncation
 *   trunc FILE N         OPEN_EXISTING, SetFilePointer + SetEndOfFile
 *   mkdir DIR            CreateDirectoryW
 *   rmdir DIR            RemoveDirectoryW
 *   del FILE             DeleteFileW
 *   move A B             MoveFileW
 *   movex A B FLAGS      MoveFileExW with FLAGS (decimal)
 *   copy A B FAILIFEXISTS  CopyFileW
 *   replace NEW TARGET   ReplaceFileW: NEW's content replaces TARGET (NEW goes away)
 *   cd DIR               SetCurrentDirectoryW
 *   pwd                  GetCurrentDirectoryW, relative to ROOT
 *   sleep MS             Sleep
 *   waitfor PATH MS      poll GetFileAttributesW until PATH exists (at most MS)
 */
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#define MAXP 4096

static wchar_t root[MAXP];
static size_t root_len;
static HANDLE out;

static void emit(const char *s, size_t n) {
    DWORD w;
    while (n > 0) {
        if (!WriteFile(out, s, (DWORD)n, &w, NULL)) exit(3);
        s += w;
        n -= w;
    }
}

static void puts_(const char *s) { emit(s, strlen(s)); }

static void printf_(const char *fmt, ...) {
    char buf[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0) emit(buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static void put_w(const wchar_t *s) {
    char buf[MAXP * 4];
    int n = WideCharToMultiByte(CP_UTF8, 0, s, -1, buf, sizeof buf, NULL, NULL);
    if (n > 0) emit(buf, (size_t)n - 1);
}

/* Bytes as one line: printable ASCII and UTF-8 bytes as they are, the rest escaped. */
static void put_escaped(const unsigned char *p, size_t n) {
    puts_("\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (c == '\n') puts_("\\n");
        else if (c == '\r') puts_("\\r");
        else if (c == '\\') puts_("\\\\");
        else if (c == '"') puts_("\\\"");
        else if (c < 0x20 || c == 0x7f) printf_("\\x%02x", c);
        else emit((const char *)&c, 1);
    }
    puts_("\"");
}

static void err(void) { printf_("  err %lu\n", GetLastError()); }
static void ok(void) { puts_("  ok\n"); }
static void result(BOOL b) { if (b) ok(); else err(); }

/* Text argument escapes. */
static size_t unescape(const wchar_t *in, char *outb, size_t cap) {
    wchar_t tmp[MAXP];
    size_t j = 0;
    for (size_t i = 0; in[i] && j < MAXP - 1; i++) {
        if (in[i] == L'\\' && in[i + 1]) {
            i++;
            tmp[j++] = in[i] == L'n' ? L'\n' : in[i] == L't' ? L'\t' : in[i] == L'r' ? L'\r' : in[i];
        } else {
            tmp[j++] = in[i];
        }
    }
    tmp[j] = 0;
    int n = WideCharToMultiByte(CP_UTF8, 0, tmp, -1, outb, (int)cap, NULL, NULL);
    return n > 0 ? (size_t)n - 1 : 0;
}

static void full_path(const wchar_t *arg, wchar_t *dst) {
    wchar_t *p;
    if (arg[0] == L'@') {
        wcscpy(dst, arg + 1);
    } else if (arg[0] == L'?' && (arg[1] == L'/' || arg[1] == L'\\')) {
        swprintf(dst, MAXP, L"\\\\?\\%ls\\%ls", root, arg + 2);
    } else if (arg[0] == L'.' && (arg[1] == L'/' || arg[1] == L'\\' || arg[1] == 0)) {
        wcscpy(dst, arg);
    } else {
        wcscpy(dst, root);
        if (arg[0]) {
            wcscat(dst, L"\\");
            wcscat(dst, arg);
        }
    }
    for (p = dst; *p; p++)
        if (*p == L'/') *p = L'\\';
}

/* A Windows path printed relative to ROOT (case-insensitively), so the output
 * does not depend on where the tree is. */
static void put_rel(const wchar_t *path) {
    const wchar_t *p = path;
    if (!wcsncmp(p, L"\\\\?\\", 4)) p += 4;
    if (!_wcsnicmp(p, root, root_len) && (p[root_len] == 0 || p[root_len] == L'\\')) {
        puts_("<ROOT>");
        put_w(p + root_len);
    } else {
        puts_("<OUTSIDE>");
        put_w(p);
    }
}

typedef struct {
    wchar_t name[MAX_PATH];
    DWORD attrs;
    unsigned long long size;
} entry;

static int by_name(const void *a, const void *b) { return wcscmp(((const entry *)a)->name, ((const entry *)b)->name); }

/* FindFirstFileW/FindNextFileW over dir\pattern, sorted. Returns the count, or -1 (error set). */
static int find_all(const wchar_t *dir, const wchar_t *pattern, entry **res) {
    wchar_t spec[MAXP];
    WIN32_FIND_DATAW fd;
    size_t cap = 64, n = 0;
    entry *v = malloc(cap * sizeof *v);
    swprintf(spec, MAXP, L"%ls\\%ls", dir, pattern);
    HANDLE h = FindFirstFileW(spec, &fd);
    if (h == INVALID_HANDLE_VALUE) {
        free(v);
        return -1;
    }
    do {
        if (n == cap) v = realloc(v, (cap *= 2) * sizeof *v);
        wcscpy(v[n].name, fd.cFileName);
        v[n].attrs = fd.dwFileAttributes;
        v[n].size = ((unsigned long long)fd.nFileSizeHigh << 32) | fd.nFileSizeLow;
        n++;
    } while (FindNextFileW(h, &fd));
    DWORD last = GetLastError();
    FindClose(h);
    if (last != ERROR_NO_MORE_FILES) {
        free(v);
        SetLastError(last);
        return -1;
    }
    qsort(v, n, sizeof *v, by_name);
    *res = v;
    return (int)n;
}

static int read_all(const wchar_t *path, unsigned char *buf, size_t cap, size_t *len) {
    HANDLE h = CreateFileW(path, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL,
                           OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, NULL);
    if (h == INVALID_HANDLE_VALUE) return 0;
    DWORD got;
    *len = 0;
    while (*len < cap && ReadFile(h, buf + *len, (DWORD)(cap - *len), &got, NULL) && got > 0) *len += got;
    DWORD e = GetLastError();
    CloseHandle(h);
    SetLastError(e);
    return 1;
}

static void put_entry(const wchar_t *prefix, const entry *e) {
    puts_("  ");
    if (prefix) {
        put_w(prefix);
        puts_("/");
    }
    put_w(e->name);
    if (e->attrs & FILE_ATTRIBUTE_DIRECTORY)
        printf_("  dir attrs=%#lx\n", e->attrs);
    else
        printf_("  file size=%llu attrs=%#lx\n", e->size, e->attrs);
}

static void tree(const wchar_t *full, const wchar_t *rel) {
    entry *v;
    int n = find_all(full, L"*", &v);
    if (n < 0) {
        puts_("  ");
        put_w(rel);
        printf_(": err %lu\n", GetLastError());
        return;
    }
    for (int i = 0; i < n; i++) {
        if (!wcscmp(v[i].name, L".") || !wcscmp(v[i].name, L"..")) continue;
        wchar_t cf[MAXP], cr[MAXP];
        swprintf(cf, MAXP, L"%ls\\%ls", full, v[i].name);
        swprintf(cr, MAXP, L"%ls/%ls", rel, v[i].name);
        put_entry(rel, &v[i]);
        if (v[i].attrs & FILE_ATTRIBUTE_DIRECTORY) {
            tree(cf, cr);
        } else {
            static unsigned char buf[4096];
            size_t len;
            puts_("    = ");
            if (read_all(cf, buf, sizeof buf, &len)) put_escaped(buf, len);
            else printf_("err %lu", GetLastError());
            puts_("\n");
        }
    }
    free(v);
}

static HANDLE open_existing(const wchar_t *path, DWORD access) {
    return CreateFileW(path, access, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL, OPEN_EXISTING,
                       FILE_FLAG_BACKUP_SEMANTICS, NULL);
}

static void write_text(const wchar_t *path, const wchar_t *text, DWORD access, DWORD disposition) {
    static char data[MAXP * 4];
    size_t n = unescape(text, data, sizeof data);
    HANDLE h = CreateFileW(path, access, FILE_SHARE_READ, NULL, disposition, FILE_ATTRIBUTE_NORMAL, NULL);
    if (h == INVALID_HANDLE_VALUE) {
        err();
        return;
    }
    DWORD w;
    BOOL b = WriteFile(h, data, (DWORD)n, &w, NULL) && w == n;
    DWORD e = GetLastError();
    CloseHandle(h);
    SetLastError(e);
    result(b);
}

static void run_op(int argc, wchar_t **a) {
    wchar_t p1[MAXP], p2[MAXP];
    const wchar_t *op = a[0];
    puts_("$");
    for (int i = 0; i < argc; i++) {
        puts_(" ");
        put_w(a[i]);
    }
    puts_("\n");
    if (argc > 1) full_path(a[1], p1);
    if (argc > 2) full_path(a[2], p2);

    if (!wcscmp(op, L"list") && argc >= 2) {
        entry *v;
        int n = find_all(p1, argc > 2 ? a[2] : L"*", &v);
        if (n < 0) {
            err();
            return;
        }
        for (int i = 0; i < n; i++) put_entry(NULL, &v[i]);
        free(v);
    } else if (!wcscmp(op, L"tree") && argc == 2) {
        tree(p1, a[1]);
    } else if (!wcscmp(op, L"cat") && argc == 2) {
        static unsigned char buf[1 << 16];
        size_t len;
        if (!read_all(p1, buf, sizeof buf, &len)) {
            err();
            return;
        }
        puts_("  = ");
        put_escaped(buf, len);
        puts_("\n");
    } else if (!wcscmp(op, L"attr") && argc == 2) {
        WIN32_FILE_ATTRIBUTE_DATA d;
        if (!GetFileAttributesExW(p1, GetFileExInfoStandard, &d)) {
            err();
            return;
        }
        unsigned long long size = ((unsigned long long)d.nFileSizeHigh << 32) | d.nFileSizeLow;
        if (d.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY) size = 0;
        printf_("  attrs=%#lx size=%llu\n", d.dwFileAttributes, size);
    } else if (!wcscmp(op, L"info") && argc == 2) {
        BY_HANDLE_FILE_INFORMATION i;
        HANDLE h = open_existing(p1, 0);
        if (h == INVALID_HANDLE_VALUE) {
            err();
            return;
        }
        BOOL b = GetFileInformationByHandle(h, &i);
        DWORD e = GetLastError();
        CloseHandle(h);
        SetLastError(e);
        if (!b) {
            err();
            return;
        }
        unsigned long long size = ((unsigned long long)i.nFileSizeHigh << 32) | i.nFileSizeLow;
        if (i.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY) size = 0;
        printf_("  attrs=%#lx size=%llu\n", i.dwFileAttributes, size);
    } else if (!wcscmp(op, L"final") && argc == 2) {
        wchar_t f[MAXP];
        HANDLE h = open_existing(p1, 0);
        if (h == INVALID_HANDLE_VALUE) {
            err();
            return;
        }
        DWORD n = GetFinalPathNameByHandleW(h, f, MAXP, FILE_NAME_NORMALIZED | VOLUME_NAME_DOS);
        DWORD e = GetLastError();
        CloseHandle(h);
        if (!n) {
            SetLastError(e);
            err();
            return;
        }
        puts_("  ");
        put_rel(f);
        puts_("\n");
    } else if (!wcscmp(op, L"write") && argc == 3) {
        write_text(p1, a[2], GENERIC_WRITE, CREATE_ALWAYS);
    } else if (!wcscmp(op, L"create") && argc == 3) {
        write_text(p1, a[2], GENERIC_WRITE, CREATE_NEW);
    } else if (!wcscmp(op, L"append") && argc == 3) {
        write_text(p1, a[2], FILE_APPEND_DATA, OPEN_ALWAYS);
    } else if (!wcscmp(op, L"patch") && argc == 3) {
        write_text(p1, a[2], GENERIC_WRITE, OPEN_EXISTING);
    } else if (!wcscmp(op, L"trunc") && argc == 3) {
        HANDLE h = open_existing(p1, GENERIC_WRITE);
        if (h == INVALID_HANDLE_VALUE) {
            err();
            return;
        }
        BOOL b = SetFilePointer(h, _wtol(a[2]), NULL, FILE_BEGIN) != INVALID_SET_FILE_POINTER && SetEndOfFile(h);
        DWORD e = GetLastError();
        CloseHandle(h);
        SetLastError(e);
        result(b);
    } else if (!wcscmp(op, L"mkdir") && argc == 2) {
        result(CreateDirectoryW(p1, NULL));
    } else if (!wcscmp(op, L"rmdir") && argc == 2) {
        result(RemoveDirectoryW(p1));
    } else if (!wcscmp(op, L"del") && argc == 2) {
        result(DeleteFileW(p1));
    } else if (!wcscmp(op, L"move") && argc == 3) {
        result(MoveFileW(p1, p2));
    } else if (!wcscmp(op, L"movex") && argc == 4) {
        result(MoveFileExW(p1, p2, (DWORD)_wtol(a[3])));
    } else if (!wcscmp(op, L"copy") && argc == 4) {
        result(CopyFileW(p1, p2, _wtol(a[3]) != 0));
    } else if (!wcscmp(op, L"replace") && argc == 3) {
        result(ReplaceFileW(p2, p1, NULL, 0, NULL, NULL));
    } else if (!wcscmp(op, L"cd") && argc == 2) {
        result(SetCurrentDirectoryW(p1));
    } else if (!wcscmp(op, L"sleep") && argc == 2) {
        Sleep((DWORD)_wtol(a[1]));
        ok();
    } else if (!wcscmp(op, L"waitfor") && argc == 3) {
        DWORD left = (DWORD)_wtol(a[2]);
        while (GetFileAttributesW(p1) == INVALID_FILE_ATTRIBUTES && left > 0) {
            Sleep(20);
            left = left > 20 ? left - 20 : 0;
        }
        result(GetFileAttributesW(p1) != INVALID_FILE_ATTRIBUTES);
    } else if (!wcscmp(op, L"pwd") && argc == 1) {
        wchar_t c[MAXP];
        if (!GetCurrentDirectoryW(MAXP, c)) {
            err();
            return;
        }
        puts_("  ");
        put_rel(c);
        puts_("\n");
    } else {
        puts_("  bad operation\n");
        exit(2);
    }
}

int wmain(int argc, wchar_t **argv) {
    out = GetStdHandle(STD_OUTPUT_HANDLE);
    if (argc != 3) {
        fprintf(stderr, "usage: wtool.exe ROOT SCRIPT\n");
        return 2;
    }
    wcscpy(root, argv[1]);
    root_len = wcslen(root);
    while (root_len > 3 && root[root_len - 1] == L'\\') root[--root_len] = 0;

    static char raw[1 << 20];
    HANDLE s = CreateFileW(argv[2], GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING, 0, NULL);
    DWORD n;
    if (s == INVALID_HANDLE_VALUE || !ReadFile(s, raw, sizeof raw - 1, &n, NULL)) {
        fprintf(stderr, "cannot read script (error %lu)\n", GetLastError());
        return 2;
    }
    CloseHandle(s);
    raw[n] = 0;
    static wchar_t text[1 << 20];
    int m = MultiByteToWideChar(CP_UTF8, 0, raw, -1, text, sizeof text / sizeof text[0]);
    if (m <= 0) return 2;

    wchar_t *line = text;
    while (*line) {
        wchar_t *end = wcschr(line, L'\n');
        if (end) *end = 0;
        size_t len = wcslen(line);
        if (len && line[len - 1] == L'\r') line[--len] = 0;
        if (len && line[0] != L'#') {
            wchar_t *fields[8];
            int k = 0;
            wchar_t *f = line;
            fields[k++] = f;
            while (k < 8 && (f = wcschr(f, L'\t'))) {
                *f++ = 0;
                fields[k++] = f;
            }
            run_op(k, fields);
        }
        if (!end) break;
        line = end + 1;
    }
    return 0;
}
