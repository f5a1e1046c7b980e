/* A small fork-join thread pool: tasks are handed out through an atomic
 * counter. Between parallel-fors the workers spin for a short while (an
 * inference engine calls op after op: decode steps, small images) and then
 * sleep on a condition variable; the caller likewise spins a while for the
 * workers to finish before it sleeps. Waking a sleeping thread costs tens of
 * microseconds on a virtual machine, more than a small op itself. */
#include "backend/cpu/cpu.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

/* How long a thread spins before it sleeps (nanoseconds). */
enum { spin_ns = 100000 };

struct sm_pool {
  int threads; /* including the caller */
  pthread_t *workers;
  pthread_mutex_t lock;
  pthread_cond_t wake, done;
  atomic_uint_fast64_t generation; /* bumped (under lock) to start a job */
  atomic_bool stop;
  atomic_int running; /* workers still inside the current job */
  sm_task_fn fn;
  void *arg;
  int64_t tasks;
  atomic_int_fast64_t next;
};

static void run_tasks(sm_pool *pool, int worker) {
  for (;;) {
    int64_t i = atomic_fetch_add(&pool->next, 1);
    if (i >= pool->tasks) return;
    pool->fn(pool->arg, i, worker);
  }
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Spins until *flag differs from `unlike` (generation) or spin_ns pass;
 * returns whether it changed. */
static bool spin_until_changed(const atomic_uint_fast64_t *value, uint64_t unlike,
                               const atomic_bool *stop) {
  const uint64_t start = now_ns();
  for (unsigned i = 1;; ++i) {
    if (atomic_load_explicit(value, memory_order_acquire) != unlike ||
        atomic_load_explicit(stop, memory_order_relaxed))
      return true;
    CPU_RELAX();
    if (i % 64 == 0 && now_ns() - start > spin_ns) return false;
  }
}

typedef struct worker_arg {
  sm_pool *pool;
  int index;
} worker_arg;

static void *worker_main(void *p) {
  worker_arg wa = *(worker_arg *)p;
  free(p);
  sm_pool *pool = wa.pool;
  uint64_t seen = 0;
  for (;;) {
    if (!spin_until_changed(&pool->generation, seen, &pool->stop)) {
      pthread_mutex_lock(&pool->lock);
      while (!atomic_load(&pool->stop) && atomic_load(&pool->generation) == seen)
        pthread_cond_wait(&pool->wake, &pool->lock);
      pthread_mutex_unlock(&pool->lock);
    }
    if (atomic_load(&pool->stop)) break;
    seen = atomic_load_explicit(&pool->generation, memory_order_acquire);
    run_tasks(pool, wa.index);
    if (atomic_fetch_sub(&pool->running, 1) == 1) {
      /* The last one out wakes the caller if it went to sleep. */
      pthread_mutex_lock(&pool->lock);
      pthread_cond_signal(&pool->done);
      pthread_mutex_unlock(&pool->lock);
    }
  }
  return NULL;
}

seqmix_status sm_pool_create(int threads, sm_pool **out) {
  sm_pool *pool = calloc(1, sizeof *pool);
  if (!pool) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "cpu backend: out of host memory");
  pool->threads = threads < 1 ? 1 : threads;
  pthread_mutex_init(&pool->lock, NULL);
  pthread_cond_init(&pool->wake, NULL);
  pthread_cond_init(&pool->done, NULL);
  pool->workers = calloc((size_t)pool->threads, sizeof *pool->workers);
  if (!pool->workers) goto fail;
  for (int i = 1; i < pool->threads; ++i) {
    worker_arg *wa = malloc(sizeof *wa);
    if (!wa) goto fail_threads;
    *wa = (worker_arg){pool, i};
    if (pthread_create(&pool->workers[i], NULL, worker_main, wa) != 0) {
      free(wa);
      goto fail_threads;
    }
    continue;
  fail_threads:
    pool->threads = i; /* destroy joins the ones started */
    sm_pool_destroy(pool);
    return sm_fail(SEQMIX_ERROR_BACKEND, "pthread_create: cannot start CPU worker threads");
  }
  *out = pool;
  return SEQMIX_OK;
fail:
  free(pool);
  return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "cpu backend: out of host memory");
}

void sm_pool_destroy(sm_pool *pool) {
  if (!pool) return;
  pthread_mutex_lock(&pool->lock);
  atomic_store(&pool->stop, true);
  pthread_cond_broadcast(&pool->wake);
  pthread_mutex_unlock(&pool->lock);
  for (int i = 1; i < pool->threads; ++i) pthread_join(pool->workers[i], NULL);
  pthread_mutex_destroy(&pool->lock);
  pthread_cond_destroy(&pool->wake);
  pthread_cond_destroy(&pool->done);
  free(pool->workers);
  free(pool);
}

int sm_pool_threads(const sm_pool *pool) { return pool->threads; }

void sm_pool_run(sm_pool *pool, int64_t tasks, sm_task_fn fn, void *arg) {
  if (tasks <= 0) return;
  if (pool->threads == 1 || tasks == 1) {
    for (int64_t i = 0; i < tasks; ++i) fn(arg, i, 0);
    return;
  }
  pool->fn = fn;
  pool->arg = arg;
  pool->tasks = tasks;
  atomic_store(&pool->next, 0);
  atomic_store(&pool->running, pool->threads - 1);
  /* Under the lock, so a worker deciding to sleep either sees the new
   * generation or is already waiting when the broadcast comes. */
  pthread_mutex_lock(&pool->lock);
  atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release);
  pthread_cond_broadcast(&pool->wake);
  pthread_mutex_unlock(&pool->lock);
  run_tasks(pool, 0);
  const uint64_t start = now_ns();
  for (unsigned i = 1; atomic_load_explicit(&pool->running, memory_order_acquire) > 0; ++i) {
    CPU_RELAX();
    if (i % 64 == 0 && now_ns() - start > spin_ns) {
      pthread_mutex_lock(&pool->lock);
      while (atomic_load(&pool->running) > 0) pthread_cond_wait(&pool->done, &pool->lock);
      pthread_mutex_unlock(&pool->lock);
      break;
    }
  }
}
