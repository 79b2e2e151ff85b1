"""Tests of tango_stepinfo.redact: what is hidden in command lines and URLs, and what is not."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, List

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tango_stepinfo
from tango_stepinfo.redact import redact_command, redact_url

# (argv, expected result); the expected string is written as a shell would read it back.
COMMAND_LINES = [
    # option=value, with every kind of secret-looking name
    (["train.py", "--api-key=sk-abc123"], "train.py '--api-key=***'"),
    (["train.py", "--api_key=sk-abc123"], "train.py '--api_key=***'"),
    (["train.py", "--apiKey=sk-abc123"], "train.py '--apiKey=***'"),
    (["train.py", "--APIKey=sk-abc123"], "train.py '--APIKey=***'"),
    (["train.py", "--apikey=sk-abc123"], "train.py '--apikey=***'"),
    (["train.py", "--openai-api-key", "sk-abc"], "train.py --openai-api-key '***'"),
    (["train.py", "--hf_token", "hf_xyz", "--lr", "3e-4"], "train.py --hf_token '***' --lr 3e-4"),
    (["psql", "--password", "hunter2", "-h", "db"], "psql --password '***' -h db"),
    (["tool", "--passwd=hunter2"], "tool '--passwd=***'"),
    (["aws", "--aws-secret-access-key", "AbC/dEf"], "aws --aws-secret-access-key '***'"),
    (["aws", "--access_key", "AKIA123"], "aws --access_key '***'"),
    (["ssh-tool", "--private-key", "-----BEGIN"], "ssh-tool --private-key -----BEGIN"),
    (["ssh-tool", "--private-key", "key.pem"], "ssh-tool --private-key '***'"),
    (["app", "--secret", "s3cr3t"], "app --secret '***'"),
    (["app", "--client-secret=s3cr3t"], "app '--client-secret=***'"),
    (["app", "--oauthToken", "t0k"], "app --oauthToken '***'"),
    (["app", "--auth", "user:pw"], "app --auth '***'"),
    (["gcloud", "--credentials", "/tmp/c.json"], "gcloud --credentials '***'"),
    (["gcloud", "--credential-file=/tmp/c.json"], "gcloud '--credential-file=***'"),
    (["go-tool", "-token", "abc"], "go-tool -token '***'"),
    # NAME=value assignments
    (["env", "HF_TOKEN=hf_abc", "python", "x.py"], "env 'HF_TOKEN=***' python x.py"),
    (
        ["env", "PASSWORD=pw", "AWS_SECRET_ACCESS_KEY=k"],
        "env 'PASSWORD=***' 'AWS_SECRET_ACCESS_KEY=***'",
    ),
    (
        ["python", "run.py", "wandb.api_key=abc", "+db.password=pw"],
        "python run.py 'wandb.api_key=***' '+db.password=***'",
    ),
    (["python", "run.py", "trainer.max_epochs=3"], "python run.py trainer.max_epochs=3"),
    # must stay untouched
    (["tango", "run", "--tokenizer", "bert"], "tango run --tokenizer bert"),
    (["tango", "run", "--max-tokens", "512"], "tango run --max-tokens 512"),
    (["git", "commit", "--author", "x"], "git commit --author x"),
    (["setxkbmap", "--keyboard", "us"], "setxkbmap --keyboard us"),
    (["mysql", "-p", "secret", "-u", "root"], "mysql -p secret -u root"),
    (
        ["x", "--key", "k", "--ssh-key", "id", "--authors", "a"],
        "x --key k --ssh-key id --authors a",
    ),
    (["x", "PGPASSWORD=pw"], "x PGPASSWORD=pw"),
    (
        ["tango", "run", "experiment.jsonnet", "-w", "/data/ws"],
        "tango run experiment.jsonnet -w /data/ws",
    ),
    # edges: no value, empty value, flag followed by an option, after --, dash variants
    (["x", "--token"], "x --token"),
    (["x", "--password="], "x --password="),
    (["x", "HF_TOKEN="], "x HF_TOKEN="),
    (["x", "--use-auth-token", "--model", "m"], "x --use-auth-token --model m"),
    (["x", "--", "--api-key", "k"], "x -- --api-key '***'"),
    (["x", "--", "-\u2013api-key", "k"], "x -- '-\u2013api-key' '***'"),
    (["x", "\u2014token=abc"], "x '\u2014token=***'"),
    (["x", "--token=a=b"], "x '--token=***'"),
    # values with spaces and quotes
    (["x", "--password", "two words"], "x --password '***'"),
    (["x", "--api-key='sk abc'"], "x '--api-key=***'"),
    # URL credentials, anywhere
    (
        ["git", "clone", "https://user:tok@github.com/o/r.git"],
        "git clone https://github.com/o/r.git",
    ),
    (["x", "--repo=https://u:p@host/x"], "x --repo=https://host/x"),
    (["x", "--db", "postgres://admin:pw@db:5432/app"], "x --db postgres://db:5432/app"),
    (["x", "DATABASE_URL=mysql://u:p@h/d"], "x DATABASE_URL=mysql://h/d"),
    (
        ["pip", "install", "git+https://tok@github.com/o/r"],
        "pip install git+https://github.com/o/r",
    ),
    (["git", "clone", "git@github.com:o/r.git"], "git clone git@github.com:o/r.git"),
    # a command line inside one argument
    (
        ["bash", "-c", "python t.py --token abc --lr 1 && curl https://u:p@h/x"],
        "bash -c 'python t.py --token *** --lr 1 && curl https://h/x'",
    ),
    (
        ["sbatch", "--wrap", 'python x.py --api-key="a b" HF_TOKEN=t --tokenizer bert'],
        # the quoted word is replaced by a quoted word: "'--api-key=***'" inside the argument
        "sbatch --wrap 'python x.py '\"'\"'--api-key=***'\"'\"' HF_TOKEN=*** --tokenizer bert'",
    ),
]


@pytest.mark.parametrize(("argv", "expected"), COMMAND_LINES)
def test_command_lines(argv: List[str], expected: str) -> None:
    assert redact_command(argv) == expected


def test_the_table_is_big_enough() -> None:
    assert len(COMMAND_LINES) >= 20
    untouched = [argv for argv, expected in COMMAND_LINES if shlex.join(argv) == expected]
    assert len(untouched) >= 8


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:token@host/x.git", "https://host/x.git"),
        ("https://token@github.com/o/r.git", "https://github.com/o/r.git"),
        ("https://:token@host/x", "https://host/x"),
        ("http://u:p@host:8080", "http://host:8080"),
        ("ssh://git@host/x.git", "ssh://host/x.git"),
        ("https://u:p@ss@host/x", "https://host/x"),  # unescaped @ in the password
        ("https://host/x?next=a@b", "https://host/x?next=a@b"),  # @ after the authority
        ("https://host/x", "https://host/x"),
        ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
        ("/srv/git/repo.git", "/srv/git/repo.git"),
        ("", ""),
        ("not a url @ all", "not a url @ all"),
    ],
)
def test_urls(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_public_names() -> None:
    assert tango_stepinfo.redact_command is redact_command
    assert tango_stepinfo.redact_url is redact_url


def test_arguments_that_are_not_strings() -> None:
    argv: List[Any] = ["x", b"--secret", Path("/a b"), 5, None]
    assert redact_command(argv) == "x --secret '***' 5 None"


def test_never_raises() -> None:
    class Hostile:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert redact_command(["x", Hostile()]) == "x '<Hostile>'"  # type: ignore[list-item]
    assert redact_command(None) == ""  # type: ignore[arg-type]
    assert redact_command(5) == ""  # type: ignore[arg-type]
    assert redact_url(None) is None  # type: ignore[arg-type]


argv_items = st.lists(
    st.one_of(st.text(max_size=30), st.binary(max_size=10), st.integers()), max_size=8
)


@given(argv_items)
def test_any_argv_gives_a_string(argv: List[Any]) -> None:
    result = redact_command(argv)
    assert isinstance(result, str)
    if all(isinstance(a, str) for a in argv):
        assert len(shlex.split(result)) == len(argv)  # one word per argument, still


secret_values = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=6, max_size=20
).map(lambda s: "Q" + s)  # Q: in no other word of the command line
secret_names = st.sampled_from(
    ["--api-key", "--token", "--password", "--hf_token", "--secret-key", "--wandbApiKey"]
)


@given(secret_names, secret_values, st.booleans())
def test_secret_values_never_appear(name: str, value: str, joined: bool) -> None:
    argv = ["python", "train.py", f"{name}={value}" if joined else name]
    if not joined:
        argv.append(value)
    assert value not in redact_command(argv)
    assert value not in redact_command(["bash", "-c", shlex.join(argv)])


@given(st.text(alphabet="abc:@/", max_size=12), st.text(alphabet="abc:", max_size=8))
def test_url_credentials_never_appear(host: str, password: str) -> None:
    url = f"https://user:{password}X@{host.replace('@', '')}/path"
    assert "user:" not in redact_url(url)
    assert "user:" not in redact_command(["git", "clone", url])
