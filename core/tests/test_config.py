"""Settings precedence: defaults < config file < ION_* environment < flags (`with_overrides`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ion.core import errors
from ion.core.config import DispatcherSettings, IonSettings, load_settings


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_defaults_live_under_home(tmp_path: Path) -> None:
    settings = load_settings(environ={"ION_HOME": str(tmp_path)})
    assert settings.home == tmp_path
    assert settings.bus_url == f"sqlite:///{tmp_path / 'bus.db'}"
    assert settings.blobs_url == (tmp_path / "blobs").as_uri()
    assert settings.meta_url == f"sqlite:///{tmp_path / 'meta.db'}"
    assert settings.jobs_dir == tmp_path / "jobs"
    assert settings.handler.base_dir == "/ion"
    assert settings.bus.lock_duration_seconds == 30.0


def test_config_file_beats_defaults(tmp_path: Path) -> None:
    path = config_file(
        tmp_path, "bus:\n  url: sqlite:///from-file.db\n  lock_duration_seconds: 5\n"
    )
    settings = load_settings(environ={"ION_HOME": str(tmp_path)}, config_file=path)
    assert settings.bus_url == "sqlite:///from-file.db"
    assert settings.bus.lock_duration_seconds == 5.0
    assert settings.bus.receive_wait_seconds == 1.0  # untouched default


def test_the_config_file_is_found_under_home_or_through_ion_config(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("meta:\n  url: sqlite:///home-file.db\n")
    assert load_settings(environ={"ION_HOME": str(tmp_path)}).meta_url == ("sqlite:///home-file.db")
    other = tmp_path / "elsewhere.yaml"
    other.write_text("meta:\n  url: sqlite:///named-file.db\n")
    settings = load_settings(environ={"ION_HOME": str(tmp_path), "ION_CONFIG": str(other)})
    assert settings.meta_url == "sqlite:///named-file.db"


def test_environment_beats_config_file(tmp_path: Path) -> None:
    path = config_file(
        tmp_path, "bus:\n  url: sqlite:///from-file.db\n  lock_duration_seconds: 5\n"
    )
    settings = load_settings(
        environ={"ION_HOME": str(tmp_path), "ION_BUS__URL": "sqlite:///from-env.db"},
        config_file=path,
    )
    assert settings.bus_url == "sqlite:///from-env.db"
    assert settings.bus.lock_duration_seconds == 5.0  # the file still fills what env leaves


def test_overrides_beat_environment(tmp_path: Path) -> None:
    settings = load_settings(
        environ={"ION_HOME": str(tmp_path), "ION_BUS__URL": "sqlite:///from-env.db"}
    )
    flagged = settings.with_overrides(bus={"url": "sqlite:///from-flag.db"})
    assert flagged.bus_url == "sqlite:///from-flag.db"
    assert settings.bus_url == "sqlite:///from-env.db"  # settings are frozen values


def test_an_override_of_none_keeps_the_current_value(tmp_path: Path) -> None:
    settings = load_settings(environ={"ION_HOME": str(tmp_path), "ION_BUS__URL": "sqlite:///e"})
    assert settings.with_overrides(bus={"url": None}).bus_url == "sqlite:///e"


def test_the_given_environ_is_the_only_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ION_BUS__URL", "sqlite:///leaked-from-process.db")
    monkeypatch.setenv("ION_META__URL", "sqlite:///leaked-from-process.db")
    settings = load_settings(environ={"ION_HOME": str(tmp_path)})
    assert settings.bus_url == f"sqlite:///{tmp_path / 'bus.db'}"
    assert settings.meta_url == f"sqlite:///{tmp_path / 'meta.db'}"
    assert "leaked" not in settings.with_overrides(blobs={"url": "file:///b"}).bus_url


def test_the_process_environment_is_read_when_none_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ION_HOME", str(tmp_path))
    monkeypatch.setenv("ION_BUS__URL", "sqlite:///from-process.db")
    assert load_settings().bus_url == "sqlite:///from-process.db"


def test_handler_base_dir_maps_to_the_handler_setting(tmp_path: Path) -> None:
    settings = load_settings(environ={"ION_HOME": str(tmp_path), "HANDLER_BASE_DIR": "/job/7"})
    assert settings.handler.base_dir == "/job/7"


def test_ion_handler_base_dir_beats_the_2018_variable(tmp_path: Path) -> None:
    settings = load_settings(
        environ={
            "ION_HOME": str(tmp_path),
            "HANDLER_BASE_DIR": "/from-2018",
            "ION_HANDLER__BASE_DIR": "/from-ion",
        }
    )
    assert settings.handler.base_dir == "/from-ion"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ION_BUS__LOCK_DURATION_SECONDS", "half a minute"),
        ("ION_MANAGEMENT__PORT", "ninety"),
        ("ION_DISPATCHER__KEEP_JOB_DIRS", "perhaps"),
    ],
)
def test_a_bad_environment_value_names_the_variable(
    tmp_path: Path, variable: str, value: str
) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        load_settings(environ={"ION_HOME": str(tmp_path), variable: value})
    assert variable in str(caught.value)


def test_a_bad_config_file_value_names_the_setting(tmp_path: Path) -> None:
    path = config_file(tmp_path, "management:\n  port: not-a-port\n")
    with pytest.raises(errors.ConfigError, match="ION_MANAGEMENT__PORT"):
        load_settings(environ={"ION_HOME": str(tmp_path)}, config_file=path)


def test_a_bad_override_is_a_config_error_naming_the_setting(tmp_path: Path) -> None:
    settings = load_settings(environ={"ION_HOME": str(tmp_path)})
    with pytest.raises(errors.ConfigError, match=r"bus\.lock_duration_seconds"):
        settings.with_overrides(bus={"lock_duration_seconds": "soon"})


def test_a_config_file_that_is_not_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = config_file(tmp_path, "bus: [unclosed\n")
    with pytest.raises(errors.ConfigError, match="not valid YAML"):
        load_settings(environ={"ION_HOME": str(tmp_path)}, config_file=path)


def test_a_config_file_that_is_not_a_mapping_is_a_config_error(tmp_path: Path) -> None:
    path = config_file(tmp_path, "- bus\n- meta\n")
    with pytest.raises(errors.ConfigError, match="mapping"):
        load_settings(environ={"ION_HOME": str(tmp_path)}, config_file=path)


def test_an_empty_config_file_is_allowed(tmp_path: Path) -> None:
    path = config_file(tmp_path, "")
    assert load_settings(environ={"ION_HOME": str(tmp_path)}, config_file=path).bus.url == ""


def test_unrelated_variables_are_ignored(tmp_path: Path) -> None:
    settings = load_settings(
        environ={"ION_HOME": str(tmp_path), "ION_NOT_A_SETTING": "x", "PATH": "/bin"}
    )
    assert isinstance(settings, IonSettings)


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings(environ={"ION_HOME": str(tmp_path)})
    with pytest.raises(ValueError, match="frozen"):
        settings.home = Path("/elsewhere")  # type: ignore[misc]  # asserting it is refused


def test_dict_and_list_settings_come_from_the_environment_as_json(tmp_path: Path) -> None:
    settings = load_settings(
        environ={
            "ION_HOME": str(tmp_path),
            "ION_KUBERNETES__POD_LABELS": '{"azure.workload.identity/use": "true"}',
            "ION_KUBERNETES__HOST_PATH_MOUNTS": '["/data"]',
            "ION_BUS__URL": "{not json, and not a dict setting}",
        }
    )
    assert settings.kubernetes.pod_labels == {"azure.workload.identity/use": "true"}
    assert settings.kubernetes.host_path_mounts == ["/data"]
    assert settings.bus.url == "{not json, and not a dict setting}"


def test_a_dict_setting_that_is_not_json_is_named(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match="ION_KUBERNETES__SETTINGS_ENV must be JSON"):
        load_settings(environ={"ION_HOME": str(tmp_path), "ION_KUBERNETES__SETTINGS_ENV": "A=1"})


def test_routes_of_a_cloud_provider_s_module_may_name_what_its_dispatchers_hold() -> None:
    # kubernetes / azurebatch dispatchers hold their provider's executor instead of `executor`
    assert DispatcherSettings().route_executors("azurebatch") == ["azurebatch"]
    routed = DispatcherSettings(routes_to="local, azurebatch")
    assert routed.route_executors("azurebatch") == ["azurebatch", "local"]
    assert routed.route_executors("kubernetes") == ["kubernetes", "local", "azurebatch"]
    # local and docker modules' dispatchers hold `executor` and routes_to
    assert routed.route_executors("local") == ["local", "azurebatch"]
    assert DispatcherSettings(routes_to="kubernetes").route_executors() == ["local", "kubernetes"]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("managment:\n  port: 9100\n", "'managment'"),
        ("management:\n  prot: 9100\n", "'management.prot'"),
        ("dispatcher:\n  kubernetes:\n    x: 1\n", "'dispatcher.kubernetes'"),
    ],
)
def test_a_config_file_key_no_setting_has_is_refused_naming_it(
    tmp_path: Path, text: str, key: str
) -> None:
    path = config_file(tmp_path, text)
    with pytest.raises(errors.ConfigError) as caught:
        load_settings(environ={"ION_HOME": str(tmp_path)}, config_file=path)
    assert f"unknown key {key}" in str(caught.value) and str(path) in str(caught.value)


def test_every_known_key_of_a_config_file_is_accepted(tmp_path: Path) -> None:
    text = "home: /tmp/h\nmanagement:\n  port: 9100\nkubernetes:\n  namespace: jobs\n"
    path = config_file(tmp_path, text)
    settings = load_settings(environ={"ION_HOME": str(tmp_path)}, config_file=path)
    assert settings.management.port == 9100 and settings.kubernetes.namespace == "jobs"


def test_a_home_given_as_a_flag_reads_its_config_yaml_like_ion_home(tmp_path: Path) -> None:
    """`--home DIR` (what `entrypoint.start(home=)` gets) means `ION_HOME=DIR`, config included."""
    from ion.core import entrypoint

    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text("management:\n  prot: 9100\n")
    want = f"config file {home / 'config.yaml'}: unknown key 'management.prot'"
    with pytest.raises(errors.ConfigError, match="unknown key") as by_env:
        load_settings(environ={"ION_HOME": str(home)})
    assert want in str(by_env.value)
    with pytest.raises(errors.ConfigError, match="unknown key") as by_flag:
        entrypoint.start("test", home=home, environ={"ION_HOME": str(tmp_path / "elsewhere")})
    assert want in str(by_flag.value)
