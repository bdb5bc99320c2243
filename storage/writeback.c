/* Paced writeback (storage/writeback.h). */
#include "storage/writeback.h"

#include <fcntl.h> /* sync_file_range (_GNU_SOURCE: CMakeLists.txt) */

void tandem_writeback_init(struct tandem_writeback *w, int fd)
{
    w->fd = fd;
    w->started = 0;
}

void tandem_writeback_note(struct tandem_writeback *w, uint64_t written)
{
    while (written - w->started >= TANDEM_WRITEBACK_STEP) {
        (void)sync_file_range(w->fd, (off64_t)w->started, (off64_t)TANDEM_WRITEBACK_STEP,
                              SYNC_FILE_RANGE_WRITE);
        if (w->started >= TANDEM_WRITEBACK_STEP) {
            (void)sync_file_range(w->fd, (off64_t)(w->started - TANDEM_WRITEBACK_STEP),
                                  (off64_t)TANDEM_WRITEBACK_STEP,
                                  SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                      SYNC_FILE_RANGE_WAIT_AFTER);
        }
        w->started += TANDEM_WRITEBACK_STEP;
    }
}
