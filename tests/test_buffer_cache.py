"""iirsnn_jax/native/buffer_cache.c: large aligned blocks kept mapped and reused, everything else glibc's."""
import os
import subprocess
import sys
import textwrap

import pytest

from iirsnn_jax import hugepages
from iirsnn_jax.native import buffer_cache

pytestmark = pytest.mark.skipif(not buffer_cache.supported(), reason="needs Linux and glibc")

MiB = 1 << 20
# posix_memalign, free, realloc and malloc_usable_size as a C program sees them, and the cache's counters
PRELUDE = textwrap.dedent("""
    import ctypes, os, sys
    libc = ctypes.CDLL(None)
    libc.realloc.restype = libc.malloc.restype = ctypes.c_void_p
    libc.realloc.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.free.argtypes = libc.malloc_usable_size.argtypes = [ctypes.c_void_p]
    libc.malloc_usable_size.restype = ctypes.c_size_t
    def alloc(size, alignment=64):
        p = ctypes.c_void_p()
        assert libc.posix_memalign(ctypes.byref(p), ctypes.c_size_t(alignment), ctypes.c_size_t(size)) == 0
        return p.value
    def stats():
        values = (ctypes.c_uint64 * 4)()
        libc.iirsnn_buffer_cache_stats(values)
        return list(values)
    def fill(p, size, byte):
        ctypes.memset(p, byte, 4096); ctypes.memset(p + size - 4096, byte, 4096)
    def first_last(p, size):
        return ctypes.string_at(p, 1)[0], ctypes.string_at(p + size - 1, 1)[0]
""")


def _run(body: str, **env):
    environment = {**os.environ, "LD_PRELOAD": str(buffer_cache.build()), **env}
    result = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(body)], capture_output=True, text=True,
                            env=environment, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_freed_block_is_handed_out_again_for_the_same_size_with_its_contents():
    out = _run(f"""
        size = 100 * {MiB} + 12345
        p = alloc(size); fill(p, size, 7); libc.free(p)
        q = alloc(size)
        r = alloc(size)  # the first is in use again: a new mapping, zeroed
        other = alloc(size + 4096)
        print(q == p, first_last(q, size), first_last(r, size), r != q != other, stats())
    """)
    # hits, misses, idle bytes, mapped bytes (sizes rounded up to pages)
    block = (100 * MiB + 12345 + 4095) // 4096 * 4096
    assert out.split("\n")[0] == f"True (7, 7) (0, 0) True [1, 3, 0, {2 * block + block + 4096}]"


def test_a_request_waits_briefly_for_a_block_of_its_size_that_is_being_freed():
    """XLA asks for the next step's buffer just before freeing the last one: that one is handed out again."""
    out = _run(f"""
        import threading
        size = 64 * {MiB}
        p = alloc(size); fill(p, size, 9)
        ready = threading.Event()
        freer = threading.Thread(target=lambda: (ready.wait(), libc.free(p)))
        freer.start()
        ready.set()
        q = alloc(size)  # in use when asked for: waits (GIL released) until the other thread frees it
        freer.join()
        print(q == p, first_last(q, size), stats()[:2])
    """)
    assert out.strip() == "True (9, 9) [1, 1]"


def test_small_blocks_and_odd_alignments_are_glibcs():
    out = _run(f"""
        small = alloc({MiB}); big_aligned = alloc(64 * {MiB}, alignment=1 << 16); libc.free(small)
        libc.free(big_aligned)
        m = libc.malloc(200 * {MiB}); libc.free(m)
        print(stats())
    """)
    assert out.split() == ["[0,", "0,", "0,", "0]"]


def test_idle_blocks_beyond_the_limit_are_unmapped_oldest_first():
    out = _run(f"""
        a = alloc(64 * {MiB}); b = alloc(80 * {MiB}); fill(a, 64 * {MiB}, 1); fill(b, 80 * {MiB}, 2)
        libc.free(a); libc.free(b)  # a is dropped: both would exceed the limit
        print(stats()[2:], first_last(alloc(80 * {MiB}), 80 * {MiB}), first_last(alloc(64 * {MiB}), 64 * {MiB}))
    """, IIRSNN_BUFFER_CACHE_LIMIT=str(100 * MiB))
    assert out.strip() == f"[{80 * MiB}, {80 * MiB}] (2, 2) (0, 0)"


def test_realloc_and_usable_size_know_the_cached_blocks():
    out = _run(f"""
        size = 64 * {MiB}
        p = alloc(size); fill(p, size, 5)
        usable = libc.malloc_usable_size(p)
        same = libc.realloc(p, size - 100)
        grown = libc.realloc(same, size + 1)  # moved to glibc's heap, the block goes idle
        print(usable == size, same == p, first_last(grown, size), stats()[2] == size, libc.malloc_usable_size(0))
        libc.free(grown)
    """)
    assert out.split() == ["True", "True", "(5,", "5)", "True", "0"]


def test_a_forked_child_allocates_and_frees():
    out = _run(f"""
        p = alloc(64 * {MiB}); libc.free(p)
        pid = os.fork()
        if pid == 0:
            q = alloc(64 * {MiB}); libc.free(q); os._exit(0 if q == p else 3)
        print(os.waitpid(pid, 0)[1])
    """)
    assert out.strip() == "0"


def test_xla_reuses_its_step_buffers_and_computes_the_same():
    out = _run("""
        import jax, jax.numpy as jnp, numpy as np
        f = jax.jit(lambda x: jnp.sin(x) @ jnp.cos(x) + x)  # two 64 MiB temporaries besides the output
        x = jax.random.normal(jax.random.key(0), (4096, 4096))
        first = np.asarray(f(x))
        again = [np.array_equal(np.asarray(f(x)), first) for _ in range(3)]
        print(again, stats()[0] > 0)
    """)
    assert out.split("\n")[0] == "[True, True, True] True"


def test_ensure_restarts_once_with_the_cache_preloaded():
    script = ("import os, sys; from iirsnn_jax import hugepages; from iirsnn_jax.native import buffer_cache; "
              "hugepages.ensure(False, keep_buffers=True); print(buffer_cache.active(), hugepages.active())")
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "LD_PRELOAD")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False"]
    assert result.stderr.count("memory settings: restarting with LD_PRELOAD=") == 1
    assert hugepages.ensure.__module__ == "iirsnn_jax.hugepages"


def test_environment_keeps_the_users_preloads_and_is_idempotent():
    env = buffer_cache.environment({"LD_PRELOAD": "/lib/user.so", "OTHER": "x"}, huge_pages=True)
    assert env["LD_PRELOAD"] == f"{buffer_cache.build()} /lib/user.so" and env["OTHER"] == "x"
    assert env["IIRSNN_BUFFER_CACHE_HUGE_PAGES"] == "1"
    assert buffer_cache.environment(env, huge_pages=True) is None
