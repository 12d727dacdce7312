#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int get_args(napi_env env, napi_callback_info info, size_t need, napi_value *argv) {
  size_t argc = MAX_ARGS;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return 0;
  if (argc < need) {
    char msg[96];
    snprintf(msg, sizeof msg, "expected %zu arguments, got %zu", need, argc);
    napi_throw_type_error(env, "ERR_INVALID_ARG_COUNT", msg);
    return 0;
  }
  return 1;
}

static int type_error(napi_env env, const char *what, const char *expected) {
  char msg[160];
  snprintf(msg, sizeof msg, "%s must be %s", what, expected);
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return 0;
}

int get_i32(napi_env env, napi_value v, const char *what, int32_t *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) return type_error(env, what, "a number");
  napi_get_value_int32(env, v, out);
  return 1;
}

int get_u32(napi_env env, napi_value v, const char *what, uint32_t *out) {
  napi_valuetype t;
  double d;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) return type_error(env, what, "a number");
  napi_get_value_double(env, v, &d);
  if (!(d >= 0 && d <= 4294967295.0)) return type_error(env, what, "an unsigned 32-bit integer");
  *out = (uint32_t)d;
  return 1;
}

int get_bool(napi_env env, napi_value v, const char *what, int *out) {
  napi_valuetype t;
  bool b;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_boolean) return type_error(env, what, "a boolean");
  napi_get_value_bool(env, v, &b);
  *out = b ? 1 : 0;
  return 1;
}

int get_string(napi_env env, napi_value v, const char *what, char *out, size_t cap) {
  napi_valuetype t;
  size_t n = 0;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) return type_error(env, what, "a string");
  napi_get_value_string_utf8(env, v, NULL, 0, &n);
  if (n >= cap) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s is too long (%zu bytes, at most %zu)", what, n, cap - 1);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
    return 0;
  }
  napi_get_value_string_utf8(env, v, out, cap, &n);
  return 1;
}

static int get_typed(napi_env env, napi_value v, const char *what, napi_typedarray_type want,
                     const char *wantName, void **data, size_t *len) {
  bool is;
  napi_typedarray_type type;
  napi_value ab;
  size_t off;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return type_error(env, what, wantName);
  napi_get_typedarray_info(env, v, &type, len, data, &ab, &off);
  if (type != want) return type_error(env, what, wantName);
  if (*data == NULL && *len != 0) return type_error(env, what, "an attached typed array");
  return 1;
}

int get_u8_array(napi_env env, napi_value v, const char *what, uint8_t **data, size_t *len) {
  return get_typed(env, v, what, napi_uint8_array, "a Uint8Array", (void **)data, len);
}
int get_u32_array(napi_env env, napi_value v, const char *what, uint32_t **data, size_t *len) {
  return get_typed(env, v, what, napi_uint32_array, "a Uint32Array", (void **)data, len);
}
int get_f64_array(napi_env env, napi_value v, const char *what, double **data, size_t *len) {
  return get_typed(env, v, what, napi_float64_array, "a Float64Array", (void **)data, len);
}

int get_fd_and_program(napi_env env, napi_callback_info info, int32_t *fd, uint8_t **prog, size_t *count) {
  napi_value argv[MAX_ARGS];
  size_t len;
  if (!get_args(env, info, 2, argv) || !get_i32(env, argv[0], "fd", fd) || !get_u8_array(env, argv[1], "program", prog, &len)) return 0;
  if (len == 0 || len % 8 != 0 || len / 8 > 4096) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "program must be 1 to 4096 instructions of 8 bytes");
    return 0;
  }
  *count = len / 8;
  return 1;
}

const char *errno_name(int err) {
  switch (err) {
#define E(x) case x: return #x;
    E(EPERM) E(ENOENT) E(EINTR) E(EIO) E(ENXIO) E(EBADF) E(EAGAIN) E(ENOMEM) E(EACCES) E(EFAULT)
    E(EBUSY) E(EEXIST) E(ENODEV) E(ENOTDIR) E(EINVAL) E(ENFILE) E(EMFILE) E(ENOTTY) E(ENOSPC)
    E(EPIPE) E(ENOSYS) E(EMSGSIZE) E(ENOPROTOOPT) E(EPROTONOSUPPORT) E(EOPNOTSUPP) E(EADDRINUSE)
    E(EADDRNOTAVAIL) E(ENETDOWN) E(ENETUNREACH) E(ECONNREFUSED) E(EHOSTUNREACH) E(ENOBUFS)
    E(EBADFD) E(EAFNOSUPPORT) E(ENOTSOCK) E(EDESTADDRREQ)
#undef E
    default: return "EUNKNOWN";
  }
}

void throw_errno(napi_env env, const char *syscall, int err) {
  char msg[256];
  napi_value m, code, e, num, sc;
  snprintf(msg, sizeof msg, "%s: %s (%s)", syscall, strerror(err), errno_name(err));
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_string_utf8(env, errno_name(err), NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, m, &e);
  napi_create_int32(env, err, &num);
  napi_set_named_property(env, e, "errno", num);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &sc);
  napi_set_named_property(env, e, "syscall", sc);
  napi_throw(env, e);
}

napi_value make_i32(napi_env env, int32_t v) {
  napi_value r;
  napi_create_int32(env, v, &r);
  return r;
}

napi_value make_undefined(napi_env env) {
  napi_value r;
  napi_get_undefined(env, &r);
  return r;
}
