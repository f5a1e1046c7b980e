/* Status names, the thread's last error, the log hook, shared argument checks. */
#include "core/internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static _Thread_local char last_error[1024];

const char *seqmix_status_name(seqmix_status s) {
  switch (s) {
  case SEQMIX_OK: return "SEQMIX_OK";
  case SEQMIX_ERROR_INVALID_ARGUMENT: return "SEQMIX_ERROR_INVALID_ARGUMENT";
  case SEQMIX_ERROR_UNSUPPORTED: return "SEQMIX_ERROR_UNSUPPORTED";
  case SEQMIX_ERROR_OUT_OF_MEMORY: return "SEQMIX_ERROR_OUT_OF_MEMORY";
  case SEQMIX_ERROR_DEVICE_LOST: return "SEQMIX_ERROR_DEVICE_LOST";
  case SEQMIX_ERROR_BACKEND: return "SEQMIX_ERROR_BACKEND";
  case SEQMIX_ERROR_IO: return "SEQMIX_ERROR_IO";
  }
  return "SEQMIX_UNKNOWN_STATUS";
}

const char *seqmix_last_error(void) { return last_error; }

seqmix_status sm_fail(seqmix_status status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return status;
}

/* ---- Logging ---- */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static seqmix_log_fn log_fn;
static void *log_user;

static seqmix_log_level default_threshold(void) {
  const char *env = getenv("SEQMIX_LOG");
  if (!env || !*env) return SEQMIX_LOG_WARNING;
  if (!strcasecmp(env, "debug")) return SEQMIX_LOG_DEBUG;
  if (!strcasecmp(env, "info")) return SEQMIX_LOG_INFO;
  if (!strcasecmp(env, "error")) return SEQMIX_LOG_ERROR;
  if (!strcasecmp(env, "quiet")) return SEQMIX_LOG_ERROR + 1;
  return SEQMIX_LOG_WARNING;
}

void seqmix_set_log_callback(seqmix_log_fn fn, void *user) {
  pthread_mutex_lock(&log_lock);
  log_fn = fn;
  log_user = user;
  pthread_mutex_unlock(&log_lock);
}

void sm_log(seqmix_log_level level, const char *fmt, ...) {
  char message[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(message, sizeof message, fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&log_lock);
  seqmix_log_fn fn = log_fn;
  void *user = log_user;
  pthread_mutex_unlock(&log_lock);
  if (fn) {
    fn(level, message, user);
    return;
  }
  if ((int)level >= (int)default_threshold()) {
    static const char *const names[] = {"debug", "info", "warning", "error"};
    fprintf(stderr, "seqmix %s: %s\n", names[level], message);
  }
}

/* ---- Argument checks shared by every op ---- */

seqmix_status sm_check_context(const char *fn, const seqmix_context *ctx) {
  if (!ctx) return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: ctx is NULL", fn);
  return SEQMIX_OK;
}

seqmix_status sm_check_tensor(const char *fn, const char *arg, const seqmix_context *ctx,
                              const seqmix_tensor *t, bool optional) {
  if (!t) {
    if (optional) return SEQMIX_OK;
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: %s is NULL; it is required", fn, arg);
  }
  if (t->ctx != ctx)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                   "%s: %s belongs to another context; all tensors of a call must come from ctx",
                   fn, arg);
  return SEQMIX_OK;
}

seqmix_status sm_check_shape(const char *fn, const char *arg, const seqmix_tensor *t, int rank,
                             const int64_t *shape, const char *const *dim_names) {
  char want[160] = "", have[160] = "";
  size_t n = 0, m = 0;
  for (int i = 0; i < rank; ++i)
    n += (size_t)snprintf(want + n, sizeof want - n, "%s%s=%lld", i ? ", " : "", dim_names[i],
                          (long long)shape[i]);
  for (int i = 0; i < t->rank; ++i)
    m += (size_t)snprintf(have + m, sizeof have - m, "%s%lld", i ? ", " : "",
                          (long long)t->shape[i]);
  if (t->rank != rank)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: %s has rank %d [%s]; it must be [%s]", fn,
                   arg, t->rank, have, want);
  for (int i = 0; i < rank; ++i)
    if (t->shape[i] != shape[i])
      return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: %s has shape [%s]; it must be [%s]", fn,
                     arg, have, want);
  return SEQMIX_OK;
}
