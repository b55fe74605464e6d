"""training/compiler.py: the XLA options survive a jaxlib that does not know one of them."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iirsnn_jax import validation
from iirsnn_jax.training import compiler

UNKNOWN = {"xla_cpu_option_that_no_jaxlib_has": "1"}


def test_an_unknown_option_is_dropped_with_a_warning_and_the_step_compiles():
    known = dict(compiler.CPU_OPTIONS) if jax.default_backend() == "cpu" else {}
    with pytest.warns(RuntimeWarning, match="xla_cpu_option_that_no_jaxlib_has.*compiling without it"):
        options = compiler.compiler_options({**known, **UNKNOWN})
    assert options == known
    f = jax.jit(lambda x: 2 * x + 1, compiler_options=options)
    np.testing.assert_array_equal(f(jnp.arange(3.0)), [1.0, 3.0, 5.0])
    # the unfiltered options really do fail to compile, so the probe is what saves the run
    with pytest.raises(Exception, match="xla_cpu_option_that_no_jaxlib_has"):
        jax.jit(lambda x: x + 1, compiler_options=UNKNOWN)(jnp.ones(2))


def test_a_bad_value_is_dropped_too():
    with pytest.warns(RuntimeWarning, match="xla_cpu_scheduler_type"):
        assert compiler.compiler_options({"xla_cpu_scheduler_type": "NO_SUCH_SCHEDULER"}) == {}


def test_the_defaults_are_kept_on_cpu():
    expected = compiler.CPU_OPTIONS if jax.default_backend() == "cpu" else {}
    assert compiler.compiler_options() == expected


def test_each_scheduler_of_the_config_is_an_xla_scheduler_this_jaxlib_accepts():
    assert tuple(compiler.CPU_SCHEDULERS) == validation.CPU_SCHEDULERS
    for name, xla_name in compiler.CPU_SCHEDULERS.items():
        options = compiler.cpu_options(name)
        assert options["xla_cpu_scheduler_type"] == xla_name
        assert compiler.compiler_options(options) == options  # the probe compiled with it: none dropped
    assert compiler.cpu_options() == compiler.CPU_OPTIONS
    with pytest.raises(ValueError, match="train.cpu_scheduler='fastest' must be one of"):
        compiler.cpu_options("fastest")
