import pytest

from course_utils.core import secrets

KEY = "sk-proj-" + "a1b2c3d4" * 5


def test_mask_never_reveals_the_middle():
    masked = secrets.mask(KEY)
    assert masked == "sk-p...c3d4"
    assert KEY[4:-4] not in masked
    assert secrets.mask("") == "(not set)" and secrets.mask(None) == "(not set)"
    assert secrets.mask("short") == "********"
    assert secrets.mask("abcd-12345678-wxyz") == "********"  # 8 of 18 characters would be most of it


def test_urls_are_printed_without_their_credentials():
    assert secrets.mask_url("http://127.0.0.1:8080/v1") == "http://127.0.0.1:8080/v1"
    masked = secrets.mask_url("https://me:s3cret-token@proxy.example/v1?api-key=abc123&region=eu")
    assert masked == "https://me:********@proxy.example/v1?api-key=********&region=********"
    assert "s3cret" not in masked and "abc123" not in masked
    assert secrets.mask_url("https://tok3n@host/v1") == "https://********@host/v1"


def test_a_backend_describes_itself_without_the_urls_secret():
    from course_utils.chat.llm import ChatBackend

    backend = ChatBackend(None, "llama3.2", "base_url", "https://me:s3cret@proxy.example/v1")
    assert backend.describe() == "base_url: model llama3.2 at https://me:********@proxy.example/v1"


@pytest.mark.parametrize(
    "value, problem",
    [("   ", "empty"), (f" {KEY}", "whitespace"), (f"{KEY}\n", "whitespace"), (f'"{KEY}"', "quotes"), ("hf_" + "z" * 30, "should start with")],
)
def test_validation_names_the_problem_and_masks(value, problem):
    with pytest.raises(secrets.SecretError) as err:
        secrets.validate("OPENAI_API_KEY", value)
    assert problem in str(err.value)
    assert KEY[4:-4] not in str(err.value)


def test_get_secret_from_environment_and_dotenv(clean_env, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    assert secrets.get_secret("OPENAI_API_KEY") == KEY
    monkeypatch.delenv("OPENAI_API_KEY")
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"OPENAI_API_KEY={KEY}\n")
    secrets.load_dotenv_once(dotenv)
    assert secrets.get_secret("OPENAI_API_KEY") == KEY
    monkeypatch.delenv("OPENAI_API_KEY")


def test_dotenv_of_the_checkout_is_found_from_any_folder(clean_env, tmp_path, monkeypatch):
    from course_utils.core import config

    checkout, elsewhere = tmp_path / "course", tmp_path / "home"
    checkout.mkdir(), elsewhere.mkdir()
    (checkout / ".env").write_text("COURSE_TEST_DOTENV_VALUE=from-the-checkout\n")
    monkeypatch.setattr(config, "repo_root", lambda: checkout)
    monkeypatch.chdir(elsewhere)  # no .env here or above
    monkeypatch.setattr(secrets, "_LOADED", False)
    monkeypatch.delenv("COURSE_TEST_DOTENV_VALUE", raising=False)
    assert secrets.load_dotenv_once() == checkout / ".env"
    import os

    assert os.environ.pop("COURSE_TEST_DOTENV_VALUE") == "from-the-checkout"


def test_missing_required_key_says_where_to_put_it(clean_env):
    with pytest.raises(secrets.SecretError, match=r"\.env"):
        secrets.get_secret("OPENAI_API_KEY", required=True)
    assert secrets.get_secret("OPENAI_API_KEY") is None


def test_key_status_is_masked(clean_env, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("HF_TOKEN", "oops")
    status = secrets.key_status()
    assert status["OPENAI_API_KEY"] == "sk-p...c3d4"
    assert status["HF_TOKEN"].startswith("invalid")
    assert KEY not in str(status)
