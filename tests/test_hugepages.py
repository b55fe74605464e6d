"""iirsnn_jax/hugepages.py: the restart with glibc's huge-page tunable, visible and optional."""
import os
import subprocess
import sys

import pytest

from iirsnn_jax import hugepages

SCRIPT = ("import os, sys; from iirsnn_jax import hugepages; hugepages.ensure(sys.argv[1] == 'on'); "
          "print(os.environ.get('GLIBC_TUNABLES', ''), hugepages.active(), sys.argv[1:])")
SUPPORTED = hugepages.environment({}) is not None


def test_the_users_own_setting_wins_and_others_are_kept():
    assert hugepages.environment({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}) is None
    assert hugepages.environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}) is None
    env = hugepages.environment({"GLIBC_TUNABLES": "glibc.rtld.optional_static_tls=512", "OTHER": "x"})
    if SUPPORTED:
        assert env == {"GLIBC_TUNABLES": ":".join(("glibc.rtld.optional_static_tls=512", *hugepages.TUNABLES)),
                       "OTHER": "x"}


def _run(switch):
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    return subprocess.run([sys.executable, "-c", SCRIPT, switch, "--flag"], capture_output=True, text=True,
                          env=env, timeout=60)


@pytest.mark.skipif(not SUPPORTED, reason="needs Linux, glibc and transparent huge pages")
def test_ensure_restarts_the_command_once_and_says_so():
    result = _run("on")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [":".join(hugepages.TUNABLES), "True", "['on',", "'--flag']"]
    assert result.stderr.count("memory settings: restarting with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (") == 1


def test_off_means_no_restart():
    result = _run("off")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.split() == ["False", "['off',", "'--flag']"]
