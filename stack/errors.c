/* Error code texts, from the one list in include/raftstack/errors.h. */
#include <raftstack/errors.h>

const char *rs_strerror(int err) {
  switch (err) {
  case 0: return "success";
#define RS__ERR_TEXT(name, num, text) \
  case -(num): return text;
    RS_ERRNO_MAP(RS__ERR_TEXT)
#undef RS__ERR_TEXT
  default: return "unknown error";
  }
}

const char *rs_errname(int err) {
  switch (err) {
  case 0: return "RS_OK";
#define RS__ERR_NAME(name, num, text) \
  case -(num): return "RS_" #name;
    RS_ERRNO_MAP(RS__ERR_NAME)
#undef RS__ERR_NAME
  default: return "RS_E?";
  }
}
