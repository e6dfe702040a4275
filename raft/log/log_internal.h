/* Internals of the Raft log shared by log.c, the file store, the tools and the tests. */
#ifndef RS_RAFT_LOG_INTERNAL_H
#define RS_RAFT_LOG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft/log/log.h"

/* Bytes an entry costs beyond its payload, for log_size: one on-disk record header. */
#define LOG_ENTRY_OVERHEAD LOG_RECORD_HEADER

/* ---- the on-disk record (docs/raft-log.md) ------------------------------------------------
 *
 *   0       4    5        8                16               24          28          32
 *   +-------+----+--------+----------------+----------------+-----------+-----------+---------
 *   | len   |type| 0 0 0  | term           | index          | data_crc  | hdr_crc   | data...
 *   +-------+----+--------+----------------+----------------+-----------+-----------+---------
 *   big-endian; data_crc = crc32(data[0..len)); hdr_crc = crc32(bytes 0..28), so hdr_crc covers
 *   the header and, through data_crc, the payload. crc32 is zlib's (IEEE 802.3 polynomial).
 */
#define LOG_RECORD_HEADER 32
#define LOG_RECORD_MAX (64u * 1024 * 1024) /* largest payload accepted on load */

struct log_record {
  uint32_t len;
  uint8_t type;
  rs_term term;
  rs_index index;
  const uint8_t *data; /* inside the scanned buffer */
  size_t offset;       /* of the header, in the segment */
};

/* Writes the 32-byte header of a record with this payload into out. */
void log_record_encode(uint8_t out[LOG_RECORD_HEADER], rs_term term, rs_index index, uint8_t type,
                       const uint8_t *data, uint32_t len);

/* A segment's scan: the valid records, and where (and why) it stopped. */
struct log_scan {
  size_t valid_len; /* bytes of whole valid records from offset 0 */
  bool torn;        /* the rest (from valid_len) is a torn tail that may be cut */
  int err;          /* 0, or RS_ECORRUPT with `what` and `err_offset` */
  size_t err_offset;
  char what[96];
};
/* Scans buf[0..len) as a segment whose first record has index `first`. Calls fn for each valid
 * record in order (fn returns 0 to go on, or an error to stop with). `last` says whether this is
 * the last segment, where a bad record at the tail is a torn write (cut) rather than corruption:
 * a tail too short for a header, a valid header whose record runs past the end, a complete last
 * record whose payload CRC fails, or a bad header followed by nothing but zero bytes. Every
 * other bad record is RS_ECORRUPT. Indices must be consecutive from `first`; terms must not
 * decrease (prev_term: the term before the segment). Bounded work: one pass over buf. */
int log_segment_scan(const uint8_t *buf, size_t len, rs_index first, rs_term prev_term, bool last,
                     int (*fn)(void *arg, const struct log_record *r), void *arg,
                     struct log_scan *out);

/* ---- the metadata file ("meta") -------------------------------------------------------------
 *
 *   0        4        8          16         24             32            40     41
 *   +--------+--------+----------+----------+--------------+-------------+------+-----------+-----+
 *   | "RSLM" | ver=1  | term     | commit   | prefix_index | prefix_term | vlen | voted_for | crc |
 *   +--------+--------+----------+----------+--------------+-------------+------+-----------+-----+
 *   big-endian; crc = crc32 of every byte before it.
 */
#define LOG_META_MAGIC 0x52534c4du /* "RSLM" */
#define LOG_META_VERSION 1
#define LOG_META_MAX (41 + RAFT_ID_MAX + 4)

struct log_meta {
  rs_term term;
  rs_index commit;
  rs_index prefix_index;
  rs_term prefix_term;
  char voted_for[RAFT_ID_MAX + 1];
};
/* Encodes m into out (LOG_META_MAX bytes); returns the length. */
size_t log_meta_encode(uint8_t *out, const struct log_meta *m);
/* Decodes; 0 or RS_ECORRUPT with the reason in what. */
int log_meta_decode(const uint8_t *p, size_t len, struct log_meta *m, char *what, size_t whatlen);

/* Segment file names: "<first index, 20 digits>.seg". */
#define LOG_SEGMENT_SUFFIX ".seg"
#define LOG_META_FILE "meta"
#define LOG_META_TMP "meta.tmp"

/* ---- a log directory, as the file store loads it (raft/log/file_load.c) ---------------------- */
struct log_segment {
  rs_index first; /* index of its first record: its name */
  uint64_t size;  /* bytes of valid records */
  uint64_t *offs; /* offset of each record, n of them */
  size_t n, cap;
};
struct log_dir_state {
  struct log_meta meta;
  bool has_meta;
  struct log_segment *segs;
  size_t n_segs;
  /* What recovery found (and, with repair, did): */
  bool torn;          /* a torn tail in the last segment */
  char torn_file[64]; /* its file name */
  uint64_t torn_offset, torn_bytes;
  bool tmp_found;     /* a leftover meta.tmp (ignored, removed on repair) */
  bool empty_removed; /* an empty last segment (removed on repair) */
};
/* Loads the directory open at dirfd (path: for messages). Every CRC and index is checked first;
 * only then, with repair, is a torn tail cut (ftruncate + fsync), an empty last segment and a
 * leftover meta.tmp removed; without repair nothing is modified (tools). On RS_ECORRUPT, err
 * holds "file:offset: what" and nothing was modified. loaded may be NULL (verify only). */
int log_dir_load(int dirfd, const char *path, bool repair, struct log_dir_state *st,
                 struct log_loaded *loaded, char *err, size_t errlen);
void log_dir_state_free(struct log_dir_state *st);
/* The file name of the segment starting at first (buf of at least 32 bytes). */
void log_segment_name(char *buf, size_t len, rs_index first);
/* Records that an entry starts at off in seg. 0 or RS_ENOMEM. */
int log_segment_push(struct log_segment *seg, uint64_t off);

/* ---- fault injection (tests) ----------------------------------------------------------------
 * When set, the file store calls it before each write ("write"), fsync ("fsync") and directory
 * fsync ("dirsync"); a non-zero return is taken as that call failing with that errno. */
extern int (*_Atomic log_file_fault)(const char *what, const char *path);

#endif
