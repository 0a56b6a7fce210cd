import pytest

from app.config import Settings


def test_env_then_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("JAMBADOCS_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("JAMBADOCS_MODEL", "/models/tiny")
    monkeypatch.setenv("JAMBADOCS_CACHE_BYTES", "1000")
    s = Settings.from_env()
    assert s.data_dir == tmp_path / "env" and s.model == "/models/tiny" and s.cache_bytes == 1000
    assert s.resolved_engine() == "jamba"
    s = Settings.from_env(data_dir=tmp_path / "flag", model=None, engine="extractive")
    assert s.data_dir == tmp_path / "flag" and s.model == "/models/tiny"    # None keeps the env value
    assert s.resolved_engine() == "extractive"
    assert s.db_path.parent == tmp_path / "flag"


def test_defaults_without_env(monkeypatch):
    for k in ("DATA_DIR", "MODEL", "ENGINE", "REMOTE_URL"):
        monkeypatch.delenv(f"JAMBADOCS_{k}", raising=False)
    s = Settings.from_env()
    assert s.resolved_engine() == "extractive"
    assert "jambadocs" in str(s.data_dir) and s.data_dir.is_absolute()


@pytest.mark.parametrize("env,value", [("JAMBADOCS_ENGINE", "gpt"), ("JAMBADOCS_MAX_PAGES", "many"),
                                       ("JAMBADOCS_MAX_PAGES", "0"), ("JAMBADOCS_TEMPERATURE", "warm"),
                                       ("JAMBADOCS_TEMPERATURE", "-1"), ("JAMBADOCS_TOP_P", "1.5"),
                                       ("JAMBADOCS_SEED", "x")])
def test_bad_values_are_named(monkeypatch, env, value):
    monkeypatch.setenv(env, value)
    with pytest.raises(ValueError) as err:
        Settings.from_env()
    name = env.removeprefix("JAMBADOCS_").lower()
    assert value in str(err.value) or name in str(err.value), str(err.value)


def test_sampling_from_env_and_flags(monkeypatch):
    for k in ("TEMPERATURE", "TOP_P", "SEED"):
        monkeypatch.delenv(f"JAMBADOCS_{k}", raising=False)
    s = Settings.from_env()
    assert (s.temperature, s.top_p, s.seed) == (None, None, None)            # the checkpoint decides
    monkeypatch.setenv("JAMBADOCS_TEMPERATURE", "0.6")
    monkeypatch.setenv("JAMBADOCS_TOP_P", "0.9")
    monkeypatch.setenv("JAMBADOCS_SEED", "42")
    s = Settings.from_env()
    assert (s.temperature, s.top_p, s.seed) == (0.6, 0.9, 42)
    assert Settings.from_env(temperature=0.0).temperature == 0.0               # a flag wins, 0 included


def test_models_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("JAMBADOCS_MODELS_DIR", raising=False)
    assert Settings.from_env(data_dir=tmp_path).models_dir == tmp_path / "models"
    monkeypatch.setenv("JAMBADOCS_MODELS_DIR", str(tmp_path / "m"))
    assert Settings.from_env(data_dir=tmp_path).models_dir == tmp_path / "m"


def test_remote_api_key_from_env_or_flag_and_never_in_repr(monkeypatch, tmp_path):
    monkeypatch.setenv("JAMBADOCS_REMOTE_API_KEY", "sk-from-env")
    s = Settings.from_env(data_dir=tmp_path)
    assert s.remote_api_key == "sk-from-env" and "sk-from-env" not in repr(s)
    assert Settings.from_env(data_dir=tmp_path, remote_api_key="sk-flag").remote_api_key == "sk-flag"
    monkeypatch.delenv("JAMBADOCS_REMOTE_API_KEY")
    assert Settings.from_env(data_dir=tmp_path).remote_api_key is None


def test_quantize_from_env_and_flag(monkeypatch, tmp_path):
    monkeypatch.setenv("JAMBADOCS_QUANTIZE", "int8")
    assert Settings.from_env(data_dir=tmp_path).quantize == "int8"
    monkeypatch.delenv("JAMBADOCS_QUANTIZE")
    assert Settings.from_env(data_dir=tmp_path).quantize is None
    from app.cli import build_parser, _settings
    args = build_parser().parse_args(["--quantize", "int8", "workspaces"])
    assert _settings(args).quantize == "int8"
