"""Rows made into model instances without peewee's per-query resolution (storage/prepared.model_rows): the same
instances `Model.raw` makes, on either database."""
from __future__ import annotations

from conftest import fresh_database_url

from service.storage.db import database, init_database
from service.storage.migrations import migrate
from service.storage.models import ApiKey
from service.storage.prepared import model_rows


def test_rows_read_as_raw_reads_them(tmp_path):
    init_database(fresh_database_url(tmp_path, "modelrows"))
    try:
        with database.connection_context():
            migrate()
            ApiKey.create(id="key_a", name="a", key_hash="h" * 64, last4="abcd", budget_nano=5, used_nano=1,
                          models=["m1", "m2"], disabled=False, revoked=True, rpm=None)
            ApiKey.create(id="key_b", name="b", key_hash="i" * 64, last4="efgh", budget_nano=None, models=None)
            sql = 'SELECT *, \'v9\' AS catalog_version FROM api_key ORDER BY id'
            fast = model_rows(ApiKey, database.execute_sql(sql))
            slow = list(ApiKey.raw(sql))
            assert [row.__data__ for row in fast] == [row.__data__ for row in slow]
            assert [row.catalog_version for row in fast] == ["v9", "v9"]
            first = fast[0]
            assert (first.models, first.revoked, first.disabled, first.budget_nano) == (["m1", "m2"], True, False, 5)
            assert first._dirty == set() and not first.is_dirty()
            first.name = "renamed"  # an ordinary instance: saving writes only what changed
            first.save()
            assert ApiKey.get_by_id("key_a").name == "renamed" and ApiKey.get_by_id("key_a").revoked is True
    finally:
        database.obj.close_all()
