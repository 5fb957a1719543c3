/* glob(3) and wordexp(3) in a C program: glibc runs both on internal
 * directory calls. usage: globwe PATTERN... (run in the directory to list);
 * each argument is globbed with several flag sets, then all are joined and
 * passed to wordexp. */
#define _GNU_SOURCE
#include <glob.h>
#include <stdio.h>
#include <string.h>
#include <wordexp.h>

static void run_glob(const char *pat, int flags, const char *label) {
    glob_t g;
    memset(&g, 0, sizeof g);
    int r = glob(pat, flags, NULL, &g);
    printf("glob %s %s: %d", label, pat, r == GLOB_NOMATCH ? -1 : r);
    for (size_t i = 0; r == 0 && i < g.gl_pathc; i++) printf(" [%s]", g.gl_pathv[i]);
    printf("\n");
    if (r == 0 || r == GLOB_NOMATCH) globfree(&g);
}

int main(int argc, char **argv) {
    char all[8192] = "";
    for (int i = 1; i < argc; i++) {
        run_glob(argv[i], 0, "plain");
        run_glob(argv[i], GLOB_MARK, "mark");
        run_glob(argv[i], GLOB_ONLYDIR | GLOB_MARK, "onlydir");
        run_glob(argv[i], GLOB_NOCHECK, "nocheck");
        strncat(all, argv[i], sizeof all - strlen(all) - 2);
        strcat(all, " ");
    }
    /* GLOB_APPEND: the second pattern's matches after the first's. */
    if (argc > 2) {
        glob_t g;
        memset(&g, 0, sizeof g);
        glob(argv[1], 0, NULL, &g);
        glob(argv[2], GLOB_APPEND, NULL, &g);
        printf("append:");
        for (size_t i = 0; i < g.gl_pathc; i++) printf(" [%s]", g.gl_pathv[i]);
        printf("\n");
        globfree(&g);
    }
    wordexp_t we;
    int r = wordexp(all, &we, 0);
    printf("wordexp %d:", r);
    for (size_t i = 0; r == 0 && i < we.we_wordc; i++) printf(" [%s]", we.we_wordv[i]);
    printf("\n");
    if (r == 0) {
        r = wordexp("'dir with space'/* \"dir with\"' space'/b*.txt", &we, WRDE_APPEND);
        printf("wordexp append %d:", r);
        for (size_t i = 0; r == 0 && i < we.we_wordc; i++) printf(" [%s]", we.we_wordv[i]);
        printf("\n");
        wordfree(&we);
    }
    /* Quoting, escapes, syntax errors, and input only the real wordexp
     * handles (parameters, tilde, rejected characters). */
    static const char *tricky[] = {
        "\"a b\" c", "a\\ b", "''", "x\"*\"y", "\\*", "[", "*.txt\"", "'open", "only_m2/*.txt textures/m[12]_tex.dds",
        "~", "$HOME/x*", "a|b", "*/m?_*", "\"dir with space\"/*", "'dir with space'/m*", "\"only_m2\"/r* mesh*/*/b",
        "  spaced   words\t* ", NULL};
    for (int i = 0; tricky[i]; i++) {
        r = wordexp(tricky[i], &we, 0);
        printf("wordexp <%s> %d:", tricky[i], r);
        for (size_t k = 0; r == 0 && k < we.we_wordc; k++) printf(" [%s]", we.we_wordv[k]);
        printf("\n");
        if (r == 0) wordfree(&we);
    }
    we.we_offs = 2;
    r = wordexp("textures/*.dds nomatch*", &we, WRDE_DOOFFS);
    printf("wordexp offs %d:", r);
    for (size_t i = 0; r == 0 && i < we.we_offs + we.we_wordc; i++)
        printf(" [%s]", we.we_wordv[i] ? we.we_wordv[i] : "(null)");
    printf("\n");
    if (r == 0) wordfree(&we);
    return 0;
}
