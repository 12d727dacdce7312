/*
 * Pollers: a uv_poll_t on a TAP or UDP fd inside the calling thread's libuv loop.
 * On readability the poller reads a whole batch (until EAGAIN or the batch is
 * full) into the caller's preallocated buffers and calls JavaScript once with the
 * frame count; a negative count is -errno. epoll here is level-triggered, so a
 * batch that filled up is followed by another callback on the next loop turn.
 *
 * Lifetime: rxStop() closes the handle; an environment cleanup hook closes any
 * poller still open when a worker thread or the process ends, so no handle
 * outlives its loop.
 *
 * Busy polling (busyPoll(us), per thread; 0 = off, the default): after any
 * poller read a batch, the loop keeps polling with a zero timeout for `us`
 * microseconds instead of sleeping in epoll_wait. A frame that arrives in that
 * window (the reply to what was just forwarded, the next frame of a burst) is
 * read without the cost of waking a sleeping thread, which on a virtual machine
 * is tens of microseconds per hop. It is a uv_idle_t (an active idle handle makes
 * libuv poll without blocking), unreferenced so it never keeps the loop alive,
 * and it stops itself when the window passes: an idle agent sleeps.
 */
#include <errno.h>
#include <sys/prctl.h>
#include <stdlib.h>
#include <uv.h>

#include "batch.h"
#include "util.h"

#define KIND_FD 0
#define KIND_UDP 1

typedef struct poller {
  uv_poll_t handle;
  napi_env env;
  napi_ref cb, buf_ref, lens_ref, meta_ref;
  napi_async_context ctx;
  int fd, kind, closing;
  uint8_t *buf;
  uint32_t slot, headroom, max, budget, mean_hint;
  uint32_t *lens, *meta;
} poller_t;

static const napi_type_tag POLLER_TAG = {0x7461706573747279ULL, 0x706f6c6c65720001ULL};

int check_slots(napi_env env, size_t buflen, uint32_t slot, uint32_t headroom, size_t lenslen, uint32_t max);

static void on_close_free(uv_handle_t *h) {
  free(h->data);
}

static void on_close_release(uv_handle_t *h) {
  poller_t *p = (poller_t *)h->data;
  napi_delete_reference(p->env, p->cb);
  napi_delete_reference(p->env, p->buf_ref);
  napi_delete_reference(p->env, p->lens_ref);
  if (p->meta_ref) napi_delete_reference(p->env, p->meta_ref);
  napi_async_destroy(p->env, p->ctx);
  free(p);
}

/* The environment is going away: close without touching JS. */
static void env_cleanup(void *arg) {
  poller_t *p = (poller_t *)arg;
  if (p->closing) return;
  p->closing = 1;
  uv_poll_stop(&p->handle);
  uv_close((uv_handle_t *)&p->handle, on_close_free);
}

typedef struct busy {
  uv_idle_t idle;
  uint64_t window_ns, deadline;
  int active, closing;
} busy_t;

/* One per thread: each Node environment (main or worker) has its own loop. */
static __thread busy_t *busy;

static void on_busy_idle(uv_idle_t *h) {
  busy_t *b = (busy_t *)h->data;
  if (uv_hrtime() >= b->deadline) {
    uv_idle_stop(h);
    b->active = 0;
  }
}

static void busy_kick(void) {
  busy_t *b = busy;
  if (!b || b->window_ns == 0 || b->closing) return;
  b->deadline = uv_hrtime() + b->window_ns;
  if (!b->active) {
    b->active = 1;
    uv_idle_start(&b->idle, on_busy_idle);
  }
}

static void busy_env_cleanup(void *arg) {
  busy_t *b = (busy_t *)arg;
  b->closing = 1;
  uv_idle_stop(&b->idle);
  uv_close((uv_handle_t *)&b->idle, on_close_free);
  if (busy == b) busy = NULL;
}

/* busyPoll(us): sets this thread's busy-poll window (0..100000 us; 0 = off). */
napi_value busy_poll(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  uint32_t us;
  if (!get_args(env, info, 1, argv) || !get_u32(env, argv[0], "us", &us)) return NULL;
  if (us > 100000) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "busy-poll window must be 0..100000 us");
    return NULL;
  }
  if (!busy) {
    if (us == 0) return make_undefined(env);
    uv_loop_t *loop;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
      napi_throw_error(env, "ERR_NO_LOOP", "no libuv loop for this environment");
      return NULL;
    }
    busy_t *b = (busy_t *)calloc(1, sizeof *b);
    if (!b) {
      throw_errno(env, "calloc", ENOMEM);
      return NULL;
    }
    uv_idle_init(loop, &b->idle);
    uv_unref((uv_handle_t *)&b->idle);
    b->idle.data = b;
    napi_add_env_cleanup_hook(env, busy_env_cleanup, b);
    busy = b;
  }
  busy->window_ns = (uint64_t)us * 1000;
  if (us == 0 && busy->active) {
    uv_idle_stop(&busy->idle);
    busy->active = 0;
  }
  return make_undefined(env);
}

static void on_readable(uv_poll_t *h, int status, int events) {
  poller_t *p = (poller_t *)h->data;
  int n;
  (void)events;
  if (p->closing) return;
  if (status < 0) {
    n = status; /* libuv statuses are -errno */
  } else if (p->kind == KIND_UDP) {
    n = udp_recv_batch(p->fd, p->buf, p->slot, p->headroom, p->lens, p->meta, p->max, p->budget, &p->mean_hint);
  } else {
    n = fd_read_batch(p->fd, p->buf, p->slot, p->headroom, p->lens, p->max, p->budget);
  }
  if (n == 0) return;
  if (n > 0) busy_kick();
  napi_handle_scope scope;
  napi_value fn, recv, arg, result;
  napi_open_handle_scope(p->env, &scope);
  napi_get_reference_value(p->env, p->cb, &fn);
  napi_get_global(p->env, &recv);
  napi_create_int32(p->env, n, &arg);
  napi_make_callback(p->env, p->ctx, recv, fn, 1, &arg, &result);
  napi_close_handle_scope(p->env, scope);
}

static napi_value start(napi_env env, napi_callback_info info, int kind) {
  napi_value argv[MAX_ARGS], ext, name;
  int32_t fd;
  uint8_t *buf;
  uint32_t *lens, *meta = NULL, slot, headroom, max;
  size_t buflen, lenslen, metalen = 0;
  napi_valuetype t;
  int cbi = kind == KIND_UDP ? 7 : 6;
  if (!get_args(env, info, (size_t)cbi + 1, argv)) return NULL;
  if (!get_i32(env, argv[0], "fd", &fd) || !get_u8_array(env, argv[1], "buf", &buf, &buflen) ||
      !get_u32(env, argv[2], "slotSize", &slot) || !get_u32(env, argv[3], "headroom", &headroom) ||
      !get_u32_array(env, argv[4], "lens", &lens, &lenslen))
    return NULL;
  if (kind == KIND_UDP) {
    if (!get_u32_array(env, argv[5], "meta", &meta, &metalen) || !get_u32(env, argv[6], "max", &max)) return NULL;
  } else if (!get_u32(env, argv[5], "max", &max)) {
    return NULL;
  }
  if (!check_slots(env, buflen, slot, headroom, lenslen, max)) return NULL;
  if (kind == KIND_UDP && metalen < (size_t)max * 3) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "meta must hold 3 entries per slot");
    return NULL;
  }
  if (napi_typeof(env, argv[cbi], &t) != napi_ok || t != napi_function) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "callback must be a function");
    return NULL;
  }
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
    napi_throw_error(env, "ERR_NO_LOOP", "no libuv loop for this environment");
    return NULL;
  }
  poller_t *p = (poller_t *)calloc(1, sizeof *p);
  if (!p) {
    throw_errno(env, "calloc", ENOMEM);
    return NULL;
  }
  int rc = uv_poll_init(loop, &p->handle, fd);
  if (rc < 0) {
    free(p);
    throw_errno(env, "uv_poll_init", -rc);
    return NULL;
  }
  p->handle.data = p;
  p->env = env;
  p->fd = fd;
  p->kind = kind;
  p->buf = buf;
  p->slot = slot;
  p->headroom = headroom;
  p->max = max;
  p->lens = lens;
  p->meta = meta;
  napi_create_reference(env, argv[cbi], 1, &p->cb);
  napi_create_reference(env, argv[1], 1, &p->buf_ref);
  napi_create_reference(env, argv[4], 1, &p->lens_ref);
  if (kind == KIND_UDP) napi_create_reference(env, argv[5], 1, &p->meta_ref);
  napi_create_string_utf8(env, kind == KIND_UDP ? "tapestry:udp-rx" : "tapestry:fd-rx", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &p->ctx);
  rc = uv_poll_start(&p->handle, UV_READABLE, on_readable);
  if (rc < 0) {
    p->closing = 1;
    uv_close((uv_handle_t *)&p->handle, on_close_release);
    throw_errno(env, "uv_poll_start", -rc);
    return NULL;
  }
  napi_add_env_cleanup_hook(env, env_cleanup, p);
  napi_create_external(env, p, NULL, NULL, &ext);
  napi_type_tag_object(env, ext, &POLLER_TAG);
  return ext;
}

/* rxStart(fd, buf, slotSize, headroom, lens, max, cb(n)) -> handle: TAP or any fd of whole frames */
napi_value rx_start(napi_env env, napi_callback_info info) {
  return start(env, info, KIND_FD);
}

/* udpRxStart(fd, buf, slotSize, headroom, lens, meta, max, cb(n)) -> handle */
napi_value udp_rx_start(napi_env env, napi_callback_info info) {
  return start(env, info, KIND_UDP);
}

/* The poller behind a handle from rxStart/udpRxStart; 0 (and a TypeError thrown) for anything else. */
static int get_poller(napi_env env, napi_value v, poller_t **out) {
  bool ok = false;
  void *data = NULL;
  if (napi_check_object_type_tag(env, v, &POLLER_TAG, &ok) != napi_ok || !ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "handle must come from rxStart or udpRxStart");
    return 0;
  }
  napi_get_value_external(env, v, &data);
  *out = (poller_t *)data;
  return 1;
}

/* rxBudget(handle, bytes): the poller's batches end once they hold this many bytes (0 = only the slot count bounds them). */
napi_value rx_budget(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  poller_t *p;
  uint32_t bytes;
  if (!get_args(env, info, 2, argv) || !get_poller(env, argv[0], &p) || !get_u32(env, argv[1], "bytes", &bytes)) return NULL;
  if (p && !p->closing) p->budget = bytes;
  return make_undefined(env);
}

/* rxStop(handle): idempotent. */
napi_value rx_stop(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  poller_t *p;
  if (!get_args(env, info, 1, argv) || !get_poller(env, argv[0], &p)) return NULL;
  if (!p || p->closing) return make_undefined(env);
  p->closing = 1;
  napi_remove_env_cleanup_hook(env, env_cleanup, p);
  uv_poll_stop(&p->handle);
  uv_close((uv_handle_t *)&p->handle, on_close_release);
  return make_undefined(env);
}

/* threadName(name): names the calling thread (PR_SET_NAME, at most 15 bytes), as top -H and /proc/<pid>/task/<tid>/comm show it. */
napi_value thread_name(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  char name[16];
  if (!get_args(env, info, 1, argv)) return NULL;
  if (!get_string(env, argv[0], "name", name, sizeof name)) return NULL;
  if (prctl(PR_SET_NAME, name, 0, 0, 0) < 0) {
    throw_errno(env, "prctl PR_SET_NAME", errno);
    return NULL;
  }
  return make_undefined(env);
}
