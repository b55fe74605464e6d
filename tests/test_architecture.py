"""architecture.parse on SPEC notation, its error messages, and the shape checks at network build time."""
import re

import pytest
from flax import nnx

from iirsnn_jax import architecture, experiments, models

NMNIST_NAMES = ["axon1", "conv1", "axon2", "conv2", "axon3", "conv3", "axon4", "pool4", "axon5", "conv5",
                "axon6", "pool6", "flatten6", "axon7", "dense7", "dropout7", "axon8", "dense8"]


def test_nmnist_config_string_gives_reference_names_kinds_and_arguments():
    layers = experiments.load_config("snn_conv_1_nmnist").model.layers
    specs = architecture.parse(layers)
    assert [s.name for s in specs] == NMNIST_NAMES
    assert [s.kind for s in specs] == ["F", "C", "F", "C", "F", "C", "F", "P", "F", "C", "F", "P", "flat", "F", "N",
                                       "D", "F", "N"]
    by_name = {s.name: s.args for s in specs}
    assert by_name["conv1"] == (32, 3, 1, 1) and by_name["conv3"] == (64, 3, 1, 1)
    assert by_name["pool4"] == (2, 2, 1) and by_name["pool6"] == (2, 2, 0)
    assert by_name["dense7"] == (256,) and by_name["dense8"] == (10,)
    assert by_name["axon1"] == () and by_name["flatten6"] == ()


def test_spec_table_notation_with_arrows_parses_the_same():
    # SPEC 0 writes the networks with arrows; both "->" and "→" are accepted.
    spec_text = ("F→C(32,3,1,1)→F→C(32,3,1,1)→F→C(64,3,1,1)→F→P(2,2,1)→F→C(64,3,1,1)→F→P(2,2,0)→flat→F→N(256)"
                 "→D→F→N(10)")
    ascii_text = spec_text.replace("→", " -> ")
    plain = experiments.load_config("snn_conv_1_nmnist").model.layers
    assert architecture.parse(spec_text) == architecture.parse(plain) == architecture.parse(ascii_text)


def test_mlp_and_associative_names():
    specs = architecture.parse("F N(500) D F N(500) D F N(10)")
    assert [s.name for s in specs] == ["axon1", "dense1", "dropout1", "axon2", "dense2", "dropout2", "axon3",
                                       "dense3"]
    specs = architecture.parse(experiments.load_config("associative_memory").model.layers)
    assert [s.name for s in specs][-1] == "output_filter"  # SPEC 1.15 state_dict key `output_filter.*`
    assert [s.kind for s in specs] == ["F", "N", "F", "N", "F", "N", "F", "N", "O"]
    assert [s.args for s in specs if s.kind == "N"] == [(500,), (200,), (500,), (300,)]


@pytest.mark.parametrize("text,token", [
    ("F X N(3)", "X"),
    ("F N(3) Q(1,2)", "Q(1,2)"),
    ("f N(3)", "f"),
    ("F Flat N(3)", "Flat"),
])
def test_unknown_token_raises_naming_it(text, token):
    with pytest.raises(ValueError, match=f"'{re.escape(token)}'"):
        architecture.parse(text)


@pytest.mark.parametrize("text,token", [
    ("F N(3,4)", "N(3,4)"),
    ("F N()", "N()"),
    ("F N", "N"),
    ("F C(32,3,1)", "C(32,3,1)"),
    ("F C(1,2,3,4,5)", "C(1,2,3,4,5)"),
    ("F P(2,2)", "P(2,2)"),
    ("F(1) N(3)", "F(1)"),
    ("F N(3) D(0)", "D(0)"),
])
def test_wrong_arity_raises_naming_the_token(text, token):
    with pytest.raises(ValueError, match=re.escape(repr(token))):
        architecture.parse(text)


@pytest.mark.parametrize("text,token", [
    ("F N(a)", "N(a)"),
    ("F N(2.5)", "N(2.5)"),
    ("F C(32,3,x,1)", "C(32,3,x,1)"),
])
def test_non_integer_arguments_raise_naming_the_token(text, token):
    with pytest.raises(ValueError, match=re.escape(repr(token))):
        architecture.parse(text)


@pytest.mark.parametrize("text,fragment", [
    ("F N(3", "(3"),  # unclosed parenthesis: the leftover is named
    ("F N(3) ; D", ";"),
    ("F, N(3)", ","),
])
def test_unparseable_text_raises_naming_the_leftover(text, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        architecture.parse(text)


@pytest.mark.parametrize("text", ["", "   ", "->"])
def test_empty_layer_string_raises(text):
    with pytest.raises(ValueError):
        architecture.parse(text)


# ----------------------------------------------------------------------------------------------------------
# Shape checks at build time
# ----------------------------------------------------------------------------------------------------------


def _model_cfg(layers, input_shape):
    cfg = experiments.load_config("snn_mlp_1").model  # the defaults, via the config loader
    cfg.layers = layers
    cfg.input_shape = input_shape
    return cfg


def _build(layers, input_shape):
    # eval_shape: build the module abstractly (no parameter initialisation), the checks run in __init__.
    cfg = _model_cfg(layers, input_shape)
    return nnx.eval_shape(lambda: models.build_model(cfg))


def test_small_conv_network_builds_with_expected_names_and_shapes():
    net = _build("F C(2,3,1,1) F P(2,2,1) flat F N(3)", (6, 6, 1))
    assert net.layer_names == ("axon1", "conv1", "axon2", "pool2", "flatten2", "axon3", "dense3")
    assert net.spiking_layer_names == ("conv1", "dense3")
    assert net.output_shape == (3,)
    assert net.pool2.output_shape() == (4, 4, 2) and net.flatten2.output_shape() == (32,)


def test_conv_after_flat_raises_at_build_time():
    with pytest.raises(ValueError, match=r"conv2 needs an \(H, W, C\) input"):
        _build("F C(2,3,1,1) flat F C(2,3,1,1) F N(3)", (6, 6, 1))


def test_pool_on_flat_signal_raises_at_build_time():
    with pytest.raises(ValueError, match="pool2"):
        _build("F N(4) F P(2,2,0) F N(3)", (5,))


def test_dense_on_image_shape_raises_at_build_time():
    with pytest.raises(ValueError, match=r"dense1 needs a flat input \(add 'flat'\)"):
        _build("F N(4) F N(3)", (6, 6, 1))
    with pytest.raises(ValueError, match="dense2"):
        _build("F C(2,3,1,1) F N(3)", (6, 6, 1))


def test_network_without_spiking_layer_raises():
    with pytest.raises(ValueError, match="no spiking layer"):
        _build("F O", (5,))


def test_duplicate_layer_names_raise():
    with pytest.raises(ValueError, match="two layers named output_filter"):
        _build("F N(3) O O", (5,))


@pytest.mark.parametrize("text,shape,token", [
    ("F C(2,3,0,1) flat F N(3)", (6, 6, 1), "C(2,3,0,1)"),  # stride 0
    ("F C(0,3,1,1) flat F N(3)", (6, 6, 1), "C(0,3,1,1)"),  # no output channels
    ("F C(2,0,1,0) flat F N(3)", (6, 6, 1), "C(2,0,1,0)"),  # kernel 0
    ("F C(2,3,1,-1) flat F N(3)", (6, 6, 1), "C(2,3,1,-1)"),  # negative padding
    ("F P(2,0,0) flat F N(3)", (6, 6, 1), "P(2,0,0)"),  # stride 0
    ("F P(0,1,0) flat F N(3)", (6, 6, 1), "P(0,1,0)"),  # kernel 0
    ("F N(0) F N(3)", (5,), "N(0)"),
    ("F N(-3) F N(3)", (5,), "N(-3)"),
])
def test_non_positive_layer_arguments_raise_value_error_naming_the_token(text, shape, token):
    with pytest.raises(ValueError, match=re.escape(token)):
        _build(text, shape)


def test_second_filter_of_a_stage_gets_a_letter():
    names = [spec.name for spec in architecture.parse("F F N(3) D D F N(2)")]
    assert names == ["axon1", "axon1b", "dense1", "dropout1", "dropout1b", "axon2", "dense2"]
