"""Settings: file, environment, validation that names the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_config_matches_the_declared_defaults() -> None:
    assert load_settings(ROOT / "config.toml", environ={}) == Settings()


def test_environment_overrides_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[fetch]\nconcurrency = 50\n[mongo]\ndb = "fromfile"\n')
    env = {
        "PIPELINE_CONFIG": str(config),
        "PIPELINE_FETCH_CONCURRENCY": "300",
        "PIPELINE_FETCH_PER_HOST": "7",
        "PIPELINE_FETCH_ALLOW_PRIVATE_NETWORKS": "true",
        "PIPELINE_REDIS_URL": "redis://127.0.0.1:1/0",
        "PIPELINE_MONGO_URL": "mongodb://127.0.0.1:2/",
        "PIPELINE_S3_BUCKET": "bodies",
        "PIPELINE_S3_ENDPOINT_URL": "http://127.0.0.1:3",
        "PIPELINE_WORKSPACE": "an unrelated tool's variable, ignored",
    }
    settings = load_settings(environ=env)
    assert settings.fetch.concurrency == 300
    assert settings.fetch.per_host == 7
    assert settings.fetch.allow_private_networks is True
    assert settings.mongo.db == "fromfile"
    assert settings.redis.url == "redis://127.0.0.1:1/0"
    assert settings.mongo.url == "mongodb://127.0.0.1:2/"
    assert settings.s3.bucket == "bodies"
    assert settings.s3.endpoint_url == "http://127.0.0.1:3"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PIPELINE_FETCH_CONCURRENCY": "lots"}, "fetch.concurrency: expected a whole number"),
        ({"PIPELINE_FETCH_CONCURRENCY": "0"}, "fetch.concurrency: must be at least 1"),
        ({"PIPELINE_FETCH_ALLOW_PRIVATE_NETWORKS": "maybe"}, "fetch.allow_private_networks: expected true or false"),
        ({"PIPELINE_CRAWL_SCOPE": "galaxy"}, "crawl.scope: must be one of host, domain, any"),
        ({"PIPELINE_FETCH_CONCURENCY": "5"}, "fetch.concurency: unknown setting"),
        ({"PIPELINE_REDIS_URL": "localhost:6379"}, "redis.url: must start with redis://"),
        (
            {"PIPELINE_FETCH_PER_HOST": "500", "PIPELINE_FETCH_SHARED_LIMITS": "false"},
            "fetch.per_host: must not exceed fetch.concurrency",
        ),
        ({"PIPELINE_CPU_TIMEOUT": "nan"}, "cpu.timeout: expected a finite number"),
    ],
)
def test_bad_values_name_the_key(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_settings(environ=env)


def test_env_error_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="PIPELINE_WORKER_MAX_JOBS"):
        load_settings(environ={"PIPELINE_WORKER_MAX_JOBS": "-1"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[fetch]\nconcurrency = 'x'\n", "fetch.concurrency"),
        ("[fetch]\nconcurrency = true\n", "fetch.concurrency"),
        ("[nosuch]\na = 1\n", "nosuch: unknown section"),
        ("[fetch\n", "not valid TOML"),
        ("fetch = 3\n", "expected a [fetch] table"),
    ],
)
def test_bad_files(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(".", r"\.")):
        load_settings(config, environ={})


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"does not exist"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_replace_validates() -> None:
    with pytest.raises(ConfigError, match=r"fetch\.per_host"):
        Settings().replace(fetch={"per_host": 0})
    assert Settings().replace(fetch={"per_host": 4}).fetch.per_host == 4


def test_schedules_take_scope_rules_and_sitemaps(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        "[[schedule]]\nname = 'docs'\ncron = '@daily'\nstart_url = 'https://example.com/'\n"
        "allow = ['/docs/', '\\?page=\\d{1,3}']\ndeny = ['/old/']\nsitemaps = ['https://example.com/sitemap.xml']\n"
        "robots_sitemaps = true\nstore_lists = true\n"
    )
    [spec] = load_settings(config, environ={}).schedules
    assert spec.options["allow"] == ("/docs/", r"\?page=\d{1,3}")
    assert spec.options["deny"] == ("/old/",)
    assert spec.options["sitemaps"] == ("https://example.com/sitemap.xml",)
    assert spec.options["robots_sitemaps"] is True and spec.options["store_lists"] is True

    config.write_text(
        "[[schedule]]\nname = 'docs'\ncron = '@daily'\nstart_url = 'https://example.com/'\ndeny = ['(']\n"
    )
    with pytest.raises(ConfigError, match=r"schedule\[docs\]\.deny: invalid regular expression"):
        load_settings(config, environ={})
    env = {
        "PIPELINE_CRAWL_ALLOW": r"/p\d{1,3}/",
        "PIPELINE_CRAWL_SITEMAPS": "https://a.test/s.xml,https://b.test/s.xml",
    }
    crawl = load_settings(environ=env).crawl
    assert crawl.allow == (r"/p\d{1,3}/",)  # one pattern, commas and all
    assert crawl.sitemaps == ("https://a.test/s.xml", "https://b.test/s.xml")


def test_table_options_from_file_environment_and_keywords(tmp_path: Path) -> None:
    from pipeline.crawl.options import CrawlOptions

    config = tmp_path / "config.toml"
    config.write_text(
        '[crawl]\nuser_agent = "acme-bot/2"\n[crawl.fields]\ntitle = "h1"\ntags = ".tags a[]"\n'
        '[crawl.headers]\nAccept-Language = "fr"\n'
        '[[schedule]]\nname = "news"\ncron = "@daily"\nstart_url = "http://example.com/"\n'
        '[schedule.fields]\nheadline = "h2"\n'
    )
    settings = load_settings(config, environ={"PIPELINE_CRAWL_COOKIES": '{"session": "s1"}'})
    assert settings.crawl.fields == {"title": "h1", "tags": ".tags a[]"}
    assert settings.crawl.headers == {"Accept-Language": "fr"}
    assert settings.crawl.cookies == {"session": "s1"}
    assert settings.schedules[0].options["fields"] == {"headline": "h2"}
    # A table given replaces the default one whole; flags arrive as NAME=VALUE items.
    options = CrawlOptions.build("http://example.com/", settings, fields=["price=.price@content"])
    assert options.fields == {"price": ".price@content"}
    assert options.headers == {"Accept-Language": "fr"} and options.user_agent == "acme-bot/2"
    # What a crawl record stores (JSON in Redis, BSON in MongoDB) comes back the same.
    import json

    assert CrawlOptions.from_dict(json.loads(json.dumps(options.to_dict()))) == options


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"fields": ["title=h1["]}, "fields: field title: invalid CSS selector"),
        ({"fields": ["title"]}, "fields: expected NAME=VALUE"),
        ({"fields": {"a.b": "h1"}}, "fields: field name"),
        ({"headers": ["X-Token=a\r\nInjected: 1"]}, "headers: header X-Token: the value holds a line break"),
        ({"headers": ["Bad Name=1"]}, "headers: header name 'Bad Name'"),
        ({"headers": ["Accept-Encoding=br"]}, "set by the fetcher"),
        ({"headers": ["User-Agent=x"]}, "user_agent option"),
        ({"cookies": ["a=b;c=d"]}, "cookies: cookie a"),
        ({"auth": "only-a-user"}, "auth: expected USER:PASSWORD"),
        ({"proxies": ["socks5://127.0.0.1:1080"]}, "proxies: .*http:// or https://"),
        ({"proxies": ["http://u:secret@proxy:3128/p"]}, r"proxies: http://u:\*\*\*@proxy:3128/p: a proxy URL has no"),
    ],
)
def test_bad_http_options_and_fields_are_refused_by_name(given: dict[str, object], message: str) -> None:
    from pipeline.crawl.options import CrawlOptions

    with pytest.raises(ConfigError, match=message):
        CrawlOptions.build("http://example.com/", Settings(), **given)
