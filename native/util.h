/*
 * Argument checking and error helpers shared by the addon's files.
 * Every exported function validates its arguments and throws a JS TypeError or
 * RangeError instead of touching memory it was not given: a bad argument must
 * never crash the process.
 */
#ifndef TAPESTRY_UTIL_H
#define TAPESTRY_UTIL_H

#include <node_api.h>
#include <stddef.h>
#include <stdint.h>

#define MAX_ARGS 10

/* Fetch up to MAX_ARGS arguments; returns 0 and throws when fewer than `need`. */
int get_args(napi_env env, napi_callback_info info, size_t need, napi_value *argv);

int get_i32(napi_env env, napi_value v, const char *what, int32_t *out);
int get_u32(napi_env env, napi_value v, const char *what, uint32_t *out);
int get_bool(napi_env env, napi_value v, const char *what, int *out);
int get_string(napi_env env, napi_value v, const char *what, char *out, size_t cap);

/* Typed array views: the pointer already includes the view's byte offset; *len is in elements. */
int get_u8_array(napi_env env, napi_value v, const char *what, uint8_t **data, size_t *len);
int get_u32_array(napi_env env, napi_value v, const char *what, uint32_t **data, size_t *len);
int get_f64_array(napi_env env, napi_value v, const char *what, double **data, size_t *len);

/* (fd, program) of the BPF loaders: a Uint8Array of 1 to 4096 instructions of 8 bytes
 * (struct sock_filter and struct bpf_insn alike); *count is the instruction count. */
int get_fd_and_program(napi_env env, napi_callback_info info, int32_t *fd, uint8_t **prog, size_t *count);

/* Throws an Error whose `code` is the errno name (e.g. "EPERM"), with `errno` and `syscall` set. */
void throw_errno(napi_env env, const char *syscall, int err);
const char *errno_name(int err);

napi_value make_i32(napi_env env, int32_t v);
napi_value make_undefined(napi_env env);

#endif
