/* A native program loading a plugin: dlopen by path (which may live only in
 * a mod) or by bare name (LD_LIBRARY_PATH, the program's RUNPATH).
 * usage: dlplug PATH_OR_NAME...   prints each plugin's plugin_value() */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char **argv) {
    int bad = 0;
    for (int i = 1; i < argc; i++) {
        void *h = dlopen(argv[i], RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            printf("%s: %s\n", argv[i], dlerror());
            bad = 1;
            continue;
        }
        int (*f)(void) = (int (*)(void))dlsym(h, "plugin_value");
        printf("%s: %d\n", argv[i], f ? f() : -1);
    }
    return bad;
}
