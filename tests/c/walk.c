/* Walks a tree three ways (nftw, fts, scandir) and prints one line per entry,
 * so the same output can be compared in the view and on a merged copy. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fts.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char kind(mode_t m) {
    return S_ISDIR(m) ? 'd' : S_ISLNK(m) ? 'l' : S_ISREG(m) ? 'f' : '?';
}

static int on_nftw(const char *p, const struct stat *st, int flag, struct FTW *f) {
    printf("nftw %s flag=%d level=%d base=%s kind=%c size=%lld\n", p, flag, f->level, p + f->base,
           kind(st->st_mode), S_ISDIR(st->st_mode) ? 0LL : (long long)st->st_size);
    return 0;
}

static int by_name(const FTSENT **a, const FTSENT **b) { return strcmp((*a)->fts_name, (*b)->fts_name); }

static void scan(const char *dir) {
    struct dirent **list;
    int n = scandir(dir, &list, NULL, alphasort);
    if (n < 0) { perror("scandir"); exit(1); }
    for (int i = 0; i < n; i++) {
        printf("scandir %s/%s type=%d\n", dir, list[i]->d_name, list[i]->d_type);
        free(list[i]);
    }
    free(list);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    if (nftw(argv[1], on_nftw, 16, FTW_PHYS) != 0) { perror("nftw"); return 1; }
    if (nftw(argv[1], on_nftw, 16, FTW_PHYS | FTW_DEPTH) != 0) { perror("nftw depth"); return 1; }
    char *roots[] = {argv[1], NULL};
    FTS *fts = fts_open(roots, FTS_PHYSICAL | FTS_NOCHDIR, by_name);
    if (!fts) { perror("fts_open"); return 1; }
    FTSENT *e;
    while ((e = fts_read(fts)) != NULL) {
        printf("fts %s info=%d level=%d name=%s size=%lld\n", e->fts_path, e->fts_info, e->fts_level,
               e->fts_name, e->fts_info == FTS_F ? (long long)e->fts_statp->st_size : 0LL);
    }
    fts_close(fts);
    scan(argv[1]);
    for (int i = 2; i < argc; i++) scan(argv[i]);
    return 0;
}
