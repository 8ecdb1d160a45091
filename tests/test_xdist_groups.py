"""`make test` runs `pytest -n 2 --dist loadgroup`: tests marked with one `xdist_group` share a
worker, and with it the session fixtures and per-process caches they build (a DDP launch, every
spec compiled by the CLI, a spec's export). A pytest that drops the marks on the way to xdist
(pytest 9.2 with pytest-xdist 3.8: pytest-xdist#1386) spreads them over the workers silently,
each building what they share: this notices."""

import pytest


@pytest.mark.xdist_group("probe")
def test_the_group_reaches_the_scheduler(request):
    if not getattr(request.config.option, "loadgroup", False):  # set on xdist's workers
        pytest.skip("not under pytest-xdist with --dist loadgroup")
    assert request.node.nodeid.endswith("@probe")  # the suffix xdist's loadgroup schedules by
