"""Loading reference state_dicts: npz with and without DataParallel's prefix, torch checkpoints, bad input."""
import numpy as np
import pytest

from golden_files import golden_path
from iirsnn_jax import experiments, models, reference


@pytest.fixture(scope="module")
def mlp_params():
    with np.load(golden_path("snn_mlp_2.npz")) as data:
        return {k[len("param/"):]: data[k] for k in data.files if k.startswith("param/")}


@pytest.fixture(scope="module")
def mlp_2():
    return experiments.load_config("snn_mlp_2").model


def _kernel(model):
    return np.asarray(model.dense1.kernel[...])


def test_npz_with_and_without_module_prefix(tmp_path, mlp_params, mlp_2):
    np.savez(tmp_path / "plain.npz", **mlp_params)
    np.savez(tmp_path / "dp.npz", **{"module." + k: v for k, v in mlp_params.items()})
    plain = reference.load_state_dict(models.build_model(mlp_2, seed=1), tmp_path / "plain.npz")
    dp = reference.load_state_dict(models.build_model(mlp_2, seed=2), tmp_path / "dp.npz")
    np.testing.assert_array_equal(_kernel(plain), mlp_params["snn1.neuron_cell.weight.weight"].T)
    np.testing.assert_array_equal(_kernel(dp), _kernel(plain))
    np.testing.assert_array_equal(np.asarray(dp.axon3.alpha_1[...]), mlp_params["axon3.first_order_low_pass_cell.alpha_1"])


def test_torch_checkpoint(tmp_path, mlp_params, mlp_2):
    torch = pytest.importorskip("torch")
    state = {"module." + k: torch.from_numpy(np.asarray(v)) for k, v in mlp_params.items()}
    torch.save({"epoch": 72, "snn_state_dict": state, "optimizer_state_dict": {}, "loss": 0.1}, tmp_path / "ckpt")
    model = reference.load_state_dict(models.build_model(mlp_2, seed=1), tmp_path / "ckpt")
    np.testing.assert_array_equal(_kernel(model), mlp_params["snn1.neuron_cell.weight.weight"].T)


def test_structure_mismatch_names_the_modules(mlp_params):
    wrong = models.build_model(experiments.load_config("snn_mlp_1").model)  # F filters, not L
    with pytest.raises(ValueError, match="axon1"):
        reference.load_state_dict(wrong, mlp_params)


def test_shape_mismatch_names_the_parameter(mlp_params, mlp_2):
    bad = dict(mlp_params)
    bad["snn2.neuron_cell.weight.weight"] = np.zeros((500, 499), np.float32)
    with pytest.raises(ValueError, match="dense2.kernel"):
        reference.load_state_dict(models.build_model(mlp_2), bad)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        reference.read_state_dict(tmp_path / "nothing.npz")
