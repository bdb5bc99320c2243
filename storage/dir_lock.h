/* One process per data directory: an exclusive advisory lock (flock) on DIR/lock, held for the
 * life of the process, so a second tandemd started on a live node's directory refuses before it
 * reads or writes anything there (a second raft_start once closed the live node's open
 * segments and corrupted its log). */
#ifndef TANDEM_STORAGE_DIR_LOCK_H
#define TANDEM_STORAGE_DIR_LOCK_H

#define TANDEM_DIR_LOCK_FILE "lock"

/* Takes the lock on dir (which must exist), or fails at once with TANDEM_STATE naming the holder's
 * pid when another process holds it; other failures are translated errno codes. On success *fd
 * holds the lock until tandem_dir_unlock or the process ends; the descriptor is close-on-exec,
 * so a re-executed tandemd takes the lock anew. The file records the holder's pid for people. */
int tandem_dir_lock(const char *dir, int *fd, char *errmsg);
void tandem_dir_unlock(int fd);

#endif
