import pytest

from ansible.module_utils.pgsafe_identifiers import IdentifierError, derived_name, quote_ident, split_qualified


@pytest.mark.parametrize(("text", "expected"), [
    ("bazaar-vid_exports", ("public", "bazaar-vid_exports")),
    ("public.bazaar-vid_exports", ("public", "bazaar-vid_exports")),
    ('"my.schema"."odd""name"', ("my.schema", 'odd"name')),
    ('neon_auth.users_sync', ("neon_auth", "users_sync")),
    ('"bazaar-vid_x""; DROP TABLE ""bazaar-vid_user""; --"', ("public", 'bazaar-vid_x"; DROP TABLE "bazaar-vid_user"; --')),
])
def test_split_qualified(text, expected):
    assert split_qualified(text) == expected


@pytest.mark.parametrize("bad", ["", "a.b.c", '"unterminated', "schema.", None, 'x"y'])
def test_split_qualified_rejects(bad):
    with pytest.raises(IdentifierError):
        split_qualified(bad)


def test_quote_ident_doubles_quotes():
    assert quote_ident('a"b') == '"a""b"'
    assert quote_ident("userId") == '"userId"'
    with pytest.raises(IdentifierError):
        quote_ident("a\x00b")


def test_derived_names_fit_and_do_not_collide():
    long_a = derived_name("bazaar-vid_export_analytics", "export_id" * 5, suffix="idx")
    long_b = derived_name("bazaar-vid_export_analytics", "export_id" * 5 + "x", suffix="idx")
    assert len(long_a.encode()) <= 63 and len(long_b.encode()) <= 63
    assert long_a != long_b
    assert long_a.endswith("_idx")
    assert derived_name("short", suffix="fk") == "short_fk"
    unicode_name = derived_name("é" * 40, suffix="q")
    assert len(unicode_name.encode()) <= 63


def test_table_key_is_the_one_key_and_reads_back():
    from ansible.module_utils.pgsafe_identifiers import canonical_key, table_key
    assert table_key("public", "bazaar-vid_exports") == "public.bazaar-vid_exports"
    assert table_key("odd.schema", 'a"b') == '"odd.schema"."a""b"'
    for spelling in ('"public"."bazaar-vid_exports"', "public.bazaar-vid_exports", "bazaar-vid_exports"):
        assert canonical_key(spelling) == "public.bazaar-vid_exports"
    assert split_qualified(table_key("odd.schema", 'a"b')) == ("odd.schema", 'a"b')


def test_human_bytes_one_formatting():
    from ansible.module_utils.pgsafe_sizes import human_bytes
    assert human_bytes(0) == human_bytes(None) == "0 B"
    assert human_bytes(512) == "512 B"
    assert human_bytes(16384) == "16.0 kB"
    assert human_bytes(3 * 1024 ** 3) == "3.0 GB"
