/* An empty preload library (one constructor that does nothing): what loading
 * any LD_PRELOAD library costs a process start, the floor under ours. */
__attribute__((constructor)) static void init(void) {}
