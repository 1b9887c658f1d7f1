"""Redis URLs, including Sentinel deployments."""

from __future__ import annotations

from tidings.core.redis_url import arq_settings, parse_sentinel


def test_plain_urls_are_not_sentinel() -> None:
    assert parse_sentinel("redis://localhost:6379/0") is None
    assert parse_sentinel("unix:///tmp/redis.sock") is None


def test_a_sentinel_url_names_its_sentinels_master_and_database() -> None:
    location = parse_sentinel("redis+sentinel://u:p%40ss@s1:26379,s2:26380,s3/cache?db=2")
    assert location is not None
    assert location.hosts == [("s1", 26379), ("s2", 26380), ("s3", 26379)]
    assert (location.master, location.database) == ("cache", 2)
    assert (location.username, location.password) == ("u", "p@ss")


def test_arq_settings_follow_the_url() -> None:
    sentinel = arq_settings("redis+sentinel://s1:26379,s2:26379/mymaster")
    assert sentinel.sentinel is True
    assert sentinel.sentinel_master == "mymaster"
    assert sentinel.host == [("s1", 26379), ("s2", 26379)]
    unix = arq_settings("unix:///tmp/r.sock")
    assert unix.unix_socket_path == "/tmp/r.sock"
    plain = arq_settings("redis://h:6390/3")
    assert (plain.host, plain.port, plain.database, plain.sentinel) == ("h", 6390, 3, False)
