/* The kernel's part of deleting files on several threads through a rename (issue 26 item 2):
 * no mediaretain, only the system calls. ROOT/dNNNN/fMMM: NDIRS directories of 100 files;
 * each of THREADS threads owns every THREADS-th directory (as the executor's workers do).
 *   MODE 0: unlinkat(dir, name)                                  (what find -delete does)
 *   MODE 1: renameat2(dir, name, ROOT/trash, tname, NOREPLACE), unlinkat(trash, tname)
 *           (mediaretain: the one trash directory at the store root)
 *   MODE 2: renameat2(dir, name, dir, tname, NOREPLACE), unlinkat(dir, tname)
 *           (the same-directory variant tried and reverted on branch speed3)
 * Build and run (a fresh tree for every run):
 *   gcc -O2 -pthread -o /tmp/rn scripts/bench-trash-rename.c
 *   python3 -c 'import os,sys;r=sys.argv[1];[os.makedirs(f"{r}/d{d:04d}",exist_ok=True) or [open(f"{r}/d{d:04d}/f{i:03d}","w").close() for i in range(100)] for d in range(1000)]' /tmp/t
 *   /tmp/rn /tmp/t MODE THREADS 1000
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <stdint.h>
#include <linux/fs.h>
#include <sys/syscall.h>
/* rn ROOT MODE THREADS: ROOT/dNNN/fMMM (100 per dir, NDIRS dirs); MODE 0 unlink, 1 rename to ROOT/trash then unlink, 2 rename within dir then unlink */
static char *root; static int mode, nth, ndirs;
static int trashfd;
static void *work(void *arg) {
  long t = (long)arg; char name[64], tn[64]; unsigned long seq = 0;
  for (int d = t; d < ndirs; d += nth) {
    char dp[4096]; snprintf(dp, sizeof dp, "%s/d%04d", root, d);
    int dfd = open(dp, O_PATH|O_DIRECTORY);
    for (int i = 0; i < 100; i++) {
      snprintf(name, sizeof name, "f%03d", i);
      if (mode == 0) { unlinkat(dfd, name, 0); continue; }
      snprintf(tn, sizeof tn, ".x.%ld.%lu.%s", t, seq++, name);
      int tf = mode == 1 ? trashfd : dfd;
      if (syscall(SYS_renameat2, dfd, name, tf, tn, RENAME_NOREPLACE)) { perror("rename"); exit(1); }
      unlinkat(tf, tn, 0);
    }
    close(dfd);
  }
  return 0;
}
int main(int c, char **v) {
  root = v[1]; mode = atoi(v[2]); nth = atoi(v[3]); ndirs = atoi(v[4]);
  char tp[4096]; snprintf(tp, sizeof tp, "%s/trash", root); mkdir(tp, 0700);
  trashfd = open(tp, O_PATH|O_DIRECTORY);
  struct timespec a, b; clock_gettime(CLOCK_MONOTONIC, &a);
  pthread_t th[16]; for (long i = 0; i < nth; i++) pthread_create(&th[i], 0, work, (void*)i);
  for (int i = 0; i < nth; i++) pthread_join(th[i], 0);
  clock_gettime(CLOCK_MONOTONIC, &b);
  printf("mode %d threads %d: %.3f s\n", mode, nth, (b.tv_sec-a.tv_sec)+(b.tv_nsec-a.tv_nsec)/1e9);
}
