"""English and Russian: the storefront in each language, the switcher, and the catalogues behind them.

The catalogue checks cover every `locale/` directory in the repository (the project's and each
app's, found by walking the tree): nothing untranslated or fuzzy, placeholders intact, the
committed .mo files compiled from the .po files beside them, and — where GNU gettext is
installed — no marked string missing from a catalogue.
"""

import ast
import os
import re
import shutil
import string
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from gettext import GNUTranslations
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext

from orders.models import Order, OrderStatus
from shop.tests.conftest import Buyer, page

BASE_DIR = Path(settings.BASE_DIR)
RU_HEADERS = {"HTTP_ACCEPT_LANGUAGE": "ru-RU,ru;q=0.9,en;q=0.8"}
CSRF_RE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
NEXT_RE = re.compile(r'<form class="lang-switch" action="([^"]+)" method="post".*?'
                     r'name="next" value="([^"]*)"', re.DOTALL)


@pytest.fixture(params=["accept-language", "switcher"])
def ru_buyer(request, db) -> Buyer:
    """A buyer reading Russian: their browser asks for it, or they chose it with the switcher."""
    if request.param == "accept-language":
        return Buyer(Client(**RU_HEADERS))
    client = Client(HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9")
    response = client.post(reverse("set_language"), {"language": "ru", "next": "/"})
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "ru"
    return Buyer(client)


# --- The storefront in each language ------------------------------------------------------


def test_english_is_the_default(client, catalog):
    response = client.get(reverse("shop:catalog"))

    html = page(response)
    assert response["Content-Language"] == "en"
    assert '<html lang="en">' in html
    assert "Buy Telegram Stars" in html and "Packages" in html and "500 Stars" in html


def test_a_language_we_do_not_offer_falls_back_to_english(client, catalog):
    response = client.get(reverse("shop:catalog"), HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9")

    assert response["Content-Language"] == "en"
    assert "Packages" in page(response)


def test_catalog_in_russian(ru_buyer, catalog):
    response = ru_buyer.client.get(reverse("shop:catalog"))

    html = page(response)
    assert response["Content-Language"] == "ru"
    assert '<html lang="ru">' in html
    assert "Купить Звёзды Telegram · " in html
    assert "<h1>Купить Звёзды Telegram</h1>" in html
    assert "Пакеты" in html and "Своё количество" in html
    assert "50 звёзд" in html and "500 звёзд" in html and "5\xa0000 звёзд" in html
    assert "8,50 $" in html
    assert "Любое количество от 50 до 10\xa0000 звёзд по" in html
    assert '<strong class="unit-price">0,018 $</strong> за звезду.' in html
    assert "Тестовый режим: тестовый поставщик и тестовые платежи" in html
    assert "Купить звёзды" in html and "Условия продажи" in html
    for english in ("Packages", "Custom amount", "Choose amount", "Buy Stars", "Terms of sale"):
        assert english not in html


def test_catalog_errors_in_russian_use_the_plural_of_the_larger_number(ru_buyer, catalog):
    too_many = page(ru_buyer.choose_quantity(10_001))
    not_digits = page(ru_buyer.choose_quantity("5e2"))
    nothing = page(ru_buyer.choose_quantity(""))

    assert "Выберите от 50 до 10\xa0000 звёзд." in too_many
    assert "Введите целое число звёзд цифрами 0–9." in not_digits
    assert "Укажите, сколько звёзд вам нужно." in nothing


def test_range_error_after_21_takes_the_genitive_singular(ru_buyer, catalog):
    catalog.min_quantity, catalog.max_quantity = 10, 21
    catalog.save(update_fields=["min_quantity", "max_quantity"])

    assert "Выберите от 10 до 21 звезды." in page(ru_buyer.choose_quantity(22))


def test_redirect_messages_in_russian(ru_buyer, catalog):
    response = ru_buyer.client.get(reverse("shop:recipient"), follow=True)

    assert "Сначала выберите, сколько звёзд вам нужно." in page(response)


def test_recipient_page_in_russian(ru_buyer, standard, supplier):
    ru_buyer.choose_package(standard)

    html = page(ru_buyer.client.get(reverse("shop:recipient")))

    assert "<h1>Кому отправить звёзды?</h1>" in html
    assert "ID пользователя Telegram или @username" in html
    assert 'placeholder="123456789 или @username"' in html
    assert "Проверить аккаунт" in html
    assert "<dt>Пакет</dt><dd>Стандарт</dd>" in html and "<dt>Звёзды</dt><dd>500</dd>" in html
    assert '<dd class="price">8,50 $</dd>' in html


@pytest.mark.parametrize("raw, message", [
    ("", "Введите ID пользователя Telegram или @username."),
    ("@a", "Это не ID пользователя Telegram (цифры) и не username"),
    ("9" * 16, "Это число слишком велико для ID пользователя Telegram."),
    ("@sandbox_invalid", "Не удалось найти такой аккаунт Telegram. Проверьте ID или username"),
])
def test_recipient_errors_in_russian(ru_buyer, standard, supplier, raw, message):
    ru_buyer.choose_package(standard)

    response = ru_buyer.enter_recipient(raw)

    assert response.status_code == 400
    assert message in page(response)


def test_custom_amount_is_named_in_russian_on_the_summary(ru_buyer, catalog, supplier):
    ru_buyer.choose_quantity(777)

    html = page(ru_buyer.client.get(reverse("shop:recipient")))

    assert "<dt>Пакет</dt><dd>Своё количество</dd>" in html
    assert '<dd class="price">13,99 $</dd>' in html


def test_confirm_page_in_russian(ru_buyer, standard, supplier):
    ru_buyer.choose_package(standard)
    ru_buyer.enter_recipient("@sandbox_ok")

    html = page(ru_buyer.confirm_page())

    assert 'Пополняем <span class="handle">@sandbox_ok</span> — всё верно?' in html
    assert "Аккаунт Telegram" in html and "ID в Telegram" in html
    assert "Доставленные звёзды нельзя вернуть" in html
    assert "Способ оплаты" in html and "Тестовая оплата (песочница)" in html
    assert "Да, продолжить" in html and "Изменить" in html


def test_pay_and_status_pages_in_russian(ru_buyer, standard, supplier, q_sync,
                                        django_capture_on_commit_callbacks):
    order = ru_buyer.place(standard)
    status_url = reverse("shop:order_status", args=[order.public_id])

    awaiting = page(ru_buyer.client.get(status_url))
    with django_capture_on_commit_callbacks(execute=True):
        ru_buyer.pay(order)
    delivered = page(ru_buyer.client.get(status_url))
    payload = ru_buyer.client.get(reverse("shop:order_status_json", args=[order.public_id])).json()

    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED
    assert "Ожидает оплаты" in awaiting and "Ожидаем оплату: 8,50 $." in awaiting
    assert "Оплатить" in awaiting
    expected = f"✅ 500 звёзд отправлено @sandbox_ok. Заказ #{order.reference}"
    assert expected in delivered
    assert f'Заказ <span class="nowrap">{order.reference}</span>' in delivered
    assert "Доставлен" in delivered and "Номер заказа" in delivered and "Кому" in delivered
    assert "Купить ещё звёзд" in delivered
    assert payload["status_label"] == "Доставлен" and payload["message"] == expected


def test_every_configured_payment_method_has_a_russian_label():
    """Labels live in settings.PAYMENT_METHODS; shop.forms marks them for the catalogue."""
    translated = {entry.msgid for path in CATALOGUES if path.parent.parent.name == "ru"
                  for entry in po_read(path) if entry.msgctxt is None and all(entry.msgstr.values())}
    labels = [method["label"] for method in settings.PAYMENT_METHODS.values()]

    assert [label for label in labels if label not in translated] == [], (
        "add the label to shop.forms.PAYMENT_METHOD_LABELS, then `make messages` and translate it")
    with translation.override("ru"):
        assert gettext("Sandbox payment (test mode)") == "Тестовая оплата (песочница)"


def test_pay_page_in_russian(ru_buyer, standard, supplier):
    order = ru_buyer.place(standard)

    response = ru_buyer.client.get(reverse("shop:order_pay", args=[order.public_id]))

    html = page(response)
    assert f'Оплата заказа <span class="nowrap">{order.reference}</span>' in html
    assert "Имитировать оплату (тестовый режим)" in html and "Отменить заказ" in html
    assert "Оплатить до" in html


def test_order_texts_follow_the_reader_not_the_buyer(ru_buyer, standard, supplier):
    """An order placed in Russian reads in English to someone who asks for English."""
    order = ru_buyer.place(standard)

    html = page(Client().get(reverse("shop:order_status", args=[order.public_id])))

    assert "Waiting for your payment of $8.50." in html
    assert Order.objects.get().package_name == "Standard"


def test_terms_and_closed_pages_in_russian(client, db):
    closed = page(client.get(reverse("shop:catalog"), **RU_HEADERS))
    terms = page(client.get(reverse("shop:terms"), **RU_HEADERS))

    assert "Сейчас ничего не продаётся. Загляните позже." in closed
    assert "<h1>Условия продажи</h1>" in terms and "Доставленное не возвращается" in terms


# --- The switcher -------------------------------------------------------------------------


def _switcher(html: str) -> tuple[str, str]:
    match = NEXT_RE.search(html)
    assert match, "page has no language switcher"
    return match.group(1), match.group(2)


def test_every_page_has_a_switcher_that_returns_to_it(buyer, standard, supplier):
    order = buyer.place(standard)
    paths = [reverse("shop:catalog"), reverse("shop:recipient"), reverse("shop:confirm"),
             reverse("shop:order_pay", args=[order.public_id]),
             reverse("shop:order_status", args=[order.public_id]), reverse("shop:terms")]

    for path in paths:
        html = page(buyer.client.get(path))
        assert _switcher(html) == (reverse("set_language"), path), path
        assert 'name="language" value="en" lang="en" title="English"' in html
        assert 'name="language" value="ru" lang="ru" title="Русский"' in html
        assert 'class="current" aria-current="true">EN</button>' in html


def test_switcher_sets_russian_and_stays_on_the_page(csrf_buyer):
    terms = reverse("shop:terms")
    html = page(csrf_buyer.client.get(terms))
    action, next_url = _switcher(html)
    token = CSRF_RE.search(html).group(1)

    response = csrf_buyer.client.post(action, {"csrfmiddlewaretoken": token, "language": "ru",
                                               "next": next_url})

    assert response.status_code == 302
    assert response.url == terms
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "ru"
    after = page(csrf_buyer.client.get(response.url))
    assert "<h1>Условия продажи</h1>" in after
    assert 'class="current" aria-current="true">RU</button>' in after


def test_switcher_needs_the_csrf_token(csrf_buyer):
    response = csrf_buyer.client.post(reverse("set_language"), {"language": "ru", "next": "/"})

    assert response.status_code == 403


def test_the_switchers_choice_beats_accept_language_both_ways(client, catalog):
    client.post(reverse("set_language"), {"language": "en", "next": "/"})
    assert "Packages" in page(client.get(reverse("shop:catalog"), **RU_HEADERS))

    client.post(reverse("set_language"), {"language": "ru", "next": "/"})
    assert "Пакеты" in page(client.get(reverse("shop:catalog"), HTTP_ACCEPT_LANGUAGE="en"))


def test_switching_keeps_the_buyers_choice_and_query(buyer, standard, supplier):
    buyer.choose_package(standard)

    response = buyer.client.post(reverse("set_language"),
                                 {"language": "ru", "next": "/recipient/?from=switch"})

    assert response.url == "/recipient/?from=switch"
    html = page(buyer.client.get(response.url))
    assert "<dt>Пакет</dt><dd>Стандарт</dd>" in html
    assert _switcher(html)[1] == "/recipient/?from=switch"


def test_switcher_will_not_redirect_off_site(client, db):
    response = client.post(reverse("set_language"), {"language": "ru", "next": "https://evil.example/"})

    assert response.status_code in (204, 302)
    assert "evil.example" not in response.get("Location", "")


# --- Catalogues ---------------------------------------------------------------------------


@dataclass
class PoEntry:
    msgid: str
    msgctxt: str | None = None
    msgid_plural: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    references: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str | None, str, str | None]:
        return self.msgctxt, self.msgid, self.msgid_plural

    def where(self) -> str:
        context = f"[{self.msgctxt}] " if self.msgctxt else ""
        return f"{context}{self.msgid!r} ({' '.join(self.references) or 'no source reference'})"


_PO_LINE = re.compile(r'^(msgctxt|msgid_plural|msgid|msgstr(?:\[(\d+)\])?)\s+(".*")\s*$')


def po_read(path: Path) -> list[PoEntry]:
    """The live entries of a .po file (header first; obsolete `#~` entries left out).

    Small on purpose: enough of the PO format for what makemessages writes, no dependency.
    """
    entries: list[PoEntry] = []
    fields: dict[str, Any] = {}
    flags: set[str] = set()
    references: list[str] = []
    last: tuple[str, int | None] | None = None

    def flush() -> None:
        nonlocal fields, flags, references, last
        if "msgid" in fields:
            entries.append(PoEntry(
                msgid=fields["msgid"], msgctxt=fields.get("msgctxt"),
                msgid_plural=fields.get("msgid_plural"), msgstr=fields.get("msgstr", {}),
                flags=flags, references=references,
            ))
        fields, flags, references, last = {}, set(), [], None

    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or (line.startswith("#") and "msgstr" in fields):
            flush()  # a blank line, or the next entry's comments without one
        if not line.strip() or line.startswith("#~"):
            continue
        if line.startswith("#,"):
            flags |= {flag.strip() for flag in line[2:].split(",")}
        elif line.startswith("#:"):
            references += line[2:].split()
        elif line.startswith("#"):
            continue
        elif match := _PO_LINE.match(line):
            keyword, index, text = match.groups()
            if keyword in ("msgctxt", "msgid") and "msgid" in fields:
                flush()  # entries not separated by a blank line
            value = ast.literal_eval(text)
            if keyword.startswith("msgstr"):
                form = int(index) if index is not None else 0
                fields.setdefault("msgstr", {})[form] = value
                last = ("msgstr", form)
            else:
                fields[keyword] = value
                last = (keyword, None)
        elif line.startswith('"') and last is not None:
            keyword, form = last
            value = ast.literal_eval(line.strip())
            if keyword == "msgstr":
                fields["msgstr"][form] += value
            else:
                fields[keyword] += value
        else:
            raise AssertionError(f"{path}:{number}: not PO syntax: {line!r}")
    flush()
    return entries


def po_nplurals(entries: list[PoEntry]) -> int | None:
    header = next((entry for entry in entries if entry.msgid == "" and entry.msgctxt is None), None)
    match = re.search(r"nplurals\s*=\s*(\d+)", header.msgstr.get(0, "")) if header else None
    return int(match.group(1)) if match else None


_SKIP_DIRS = {"node_modules", "__pycache__", "var"}


def catalogues(root: Path) -> list[Path]:
    """Every .po under a `locale/<language>/LC_MESSAGES/` in the repository, venvs left out."""
    found = []
    venv = Path(sys.prefix).resolve()
    for dirpath, dirnames, _ in os.walk(root):
        dirnames[:] = [name for name in dirnames
                       if not name.startswith(".") and name not in _SKIP_DIRS
                       and (Path(dirpath) / name).resolve() != venv
                       and not (Path(dirpath) / name / "pyvenv.cfg").exists()]
        if Path(dirpath).name == "locale":
            found += Path(dirpath).glob("*/LC_MESSAGES/*.po")
            dirnames[:] = []
    return sorted(found)


CATALOGUES = catalogues(BASE_DIR)


def _ids(paths: list[Path]) -> list[str]:
    return [str(path.relative_to(BASE_DIR)) for path in paths]


def test_catalogues_are_found_for_the_storefront_and_the_order_texts():
    found = _ids(CATALOGUES)

    # A sanity check of the walk, not the list: every catalogue found is checked below.
    assert "shop/locale/ru/LC_MESSAGES/django.po" in found
    assert "orders/locale/ru/LC_MESSAGES/django.po" in found
    assert "locale/ru/LC_MESSAGES/django.po" in found
    languages = {code for code, _ in settings.LANGUAGES} - {settings.LANGUAGE_CODE}
    for path in CATALOGUES:
        assert path.parent.parent.name in languages, f"{path}: not a language in settings.LANGUAGES"


@pytest.mark.parametrize("po_path", CATALOGUES, ids=_ids(CATALOGUES))
def test_catalogue_is_complete(po_path):
    entries = po_read(po_path)
    nplurals = po_nplurals(entries)

    assert nplurals, f"{po_path}: the header has no Plural-Forms"
    fuzzy = [entry.where() for entry in entries if "fuzzy" in entry.flags]
    assert not fuzzy, f"{po_path}: fuzzy entries (review them, then drop the flag): {fuzzy}"
    untranslated = [entry.where() for entry in entries
                    if entry.msgid and (not entry.msgstr or not all(entry.msgstr.values()))]
    assert not untranslated, f"{po_path}: untranslated entries: {untranslated}"
    wrong_forms = [entry.where() for entry in entries
                   if entry.msgid_plural is not None and sorted(entry.msgstr) != list(range(nplurals))]
    assert not wrong_forms, f"{po_path}: plural entries without exactly {nplurals} forms: {wrong_forms}"


def _placeholders(text: str, flags: set[str]) -> set[str]:
    if "python-brace-format" in flags:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name}
    return set(re.findall(r"%\((\w+)\)", text))


@pytest.mark.parametrize("po_path", CATALOGUES, ids=_ids(CATALOGUES))
def test_translations_keep_every_placeholder(po_path):
    """A renamed or lost %(name)s would raise, or drop the number, only in that language."""
    problems = []
    for entry in po_read(po_path):
        if not entry.msgid or not ({"python-format", "python-brace-format"} & entry.flags):
            continue
        source = _placeholders(entry.msgid + (entry.msgid_plural or ""), entry.flags)
        values = {name: "1" for name in source}
        for form, text in entry.msgstr.items():
            if _placeholders(text, entry.flags) != source:
                problems.append(f"{entry.where()} msgstr[{form}]: {text!r}")
                continue
            try:
                text.format(**values) if "python-brace-format" in entry.flags else text % values
            except (KeyError, ValueError, TypeError, IndexError) as exc:
                problems.append(f"{entry.where()} msgstr[{form}]: {exc!r}")
    assert not problems, f"{po_path}: placeholders differ from the source text: {problems}"


@pytest.mark.parametrize("po_path", CATALOGUES, ids=_ids(CATALOGUES))
def test_compiled_catalogue_matches_its_po(po_path):
    """The committed .mo is what a machine without gettext serves: it must say what the .po says."""
    mo_path = po_path.with_suffix(".mo")
    hint = "run `make compilemessages` (needs GNU gettext) and commit the .mo"
    assert mo_path.exists(), f"{mo_path} is missing: {hint}"
    expected: dict[object, str] = {}
    for entry in po_read(po_path):
        # What msgfmt compiles: no fuzzy entries, no untranslated ones (the header is kept).
        if "fuzzy" in entry.flags or (entry.msgid and not all(entry.msgstr.values())):
            continue
        msgid = f"{entry.msgctxt}\x04{entry.msgid}" if entry.msgctxt is not None else entry.msgid
        if entry.msgid_plural is None:
            expected[msgid] = entry.msgstr[0]
        else:
            expected.update({(msgid, form): text for form, text in entry.msgstr.items()})
    with mo_path.open("rb") as mo_file:
        # _catalog is GNUTranslations' parsed table: the only way to see every entry in the file.
        compiled = dict(GNUTranslations(mo_file)._catalog)
    # Newer msgfmt drops the header's POT-Creation-Date so .mo files build reproducibly.
    for catalog in (expected, compiled):
        catalog[""] = re.sub(r"(?m)^POT-Creation-Date:.*\n", "", catalog.get("", ""))

    stale = sorted(repr(key) for key in expected.keys() ^ compiled.keys())
    changed = sorted(repr(key) for key in expected.keys() & compiled.keys()
                     if expected[key] != compiled[key])
    assert not stale and not changed, (
        f"{mo_path} is not compiled from {po_path.name}: {hint}. "
        f"Entries only on one side: {stale}; different text: {changed}")


def _have_gettext() -> bool:
    return all(shutil.which(tool) for tool in ("xgettext", "msgmerge", "msguniq"))


def _copy_ignore(directory: str, names: list[str]) -> set[str]:
    venv = Path(sys.prefix).resolve()
    return {name for name in names
            if name.startswith(".") or name in _SKIP_DIRS or name.endswith((".mo", ".sqlite3"))
            or (Path(directory) / name).resolve() == venv
            or (Path(directory) / name / "pyvenv.cfg").exists()}


def test_every_marked_string_is_in_a_catalogue(tmp_path):
    """makemessages over a copy of the repository finds exactly the msgids the catalogues hold.

    A new gettext()/{% translate %} string nobody added to a .po fails here, as does an entry
    whose source string is gone.
    """
    if not _have_gettext():
        if os.environ.get("CI") == "true":
            pytest.fail("GNU gettext (xgettext, msgmerge, msguniq) is required under CI=true")
        pytest.skip("GNU gettext is not installed (apt-get install gettext): "
                    "cannot extract strings; the catalogue and .mo checks still ran")
    copy = tmp_path / "repo"
    shutil.copytree(BASE_DIR, copy, ignore=_copy_ignore)
    languages = [code for code, _ in settings.LANGUAGES if code != settings.LANGUAGE_CODE]
    command = [sys.executable, "manage.py", "makemessages", "--no-obsolete", "--verbosity", "0"]
    for code in languages:
        command += ["--locale", code]
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "reseller.settings"}
    result = subprocess.run(command, cwd=copy, env=environment, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr

    committed = {str(path.relative_to(BASE_DIR)): path for path in CATALOGUES}
    extracted = {str(path.relative_to(copy)): path for path in catalogues(copy)}
    problems = []
    for name in sorted(committed.keys() | extracted.keys()):
        if name not in committed:
            problems.append(f"{name}: strings were extracted into a catalogue that is not committed")
            continue
        if name not in extracted:
            problems.append(f"{name}: no marked strings belong here any more")
            continue
        have = {entry.key: entry for entry in po_read(committed[name]) if entry.msgid}
        want = {entry.key: entry for entry in po_read(extracted[name]) if entry.msgid}
        problems += [f"{name}: missing {want[key].where()}" for key in want.keys() - have.keys()]
        problems += [f"{name}: no longer in the source {have[key].where()}"
                     for key in have.keys() - want.keys()]
    assert not problems, (
        "catalogues are out of date with the source; run `make messages`, translate, "
        "and commit the .po and .mo:\n" + "\n".join(problems))


# --- In a browser ---------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless=new", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PHONE = {"width": 375, "height": 667}


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    if not os.path.exists(CHROMIUM):
        message = "chromium not installed: apt-get install chromium"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    playwright_sync = pytest.importorskip("playwright.sync_api")
    # Playwright's sync API keeps an event loop on this thread, which Django's ORM guard
    # mistakes for async code; the ORM calls here are plain synchronous ones.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with playwright_sync.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()


def _no_horizontal_scroll(tab) -> None:
    widths = tab.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], f"{tab.url}: scrollWidth {widths[0]} > clientWidth {widths[1]}"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_switcher_works_without_javascript(chromium, live_server, catalog):
    from playwright.sync_api import expect

    context = chromium.new_context(base_url=live_server.url, java_script_enabled=False)
    context.set_default_timeout(15_000)
    try:
        tab = context.new_page()
        tab.goto("/terms/")
        expect(tab.get_by_role("heading", level=1)).to_have_text("Terms of sale")

        tab.get_by_role("button", name="RU", exact=True).click()

        expect(tab.get_by_role("heading", level=1)).to_have_text("Условия продажи")
        assert tab.url == f"{live_server.url}/terms/"
        expect(tab.locator("html")).to_have_attribute("lang", "ru")
        tab.get_by_role("button", name="EN", exact=True).click()
        expect(tab.get_by_role("heading", level=1)).to_have_text("Terms of sale")
    finally:
        context.close()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_russian_purchase_on_a_phone(chromium, live_server, catalog, supplier, q_sync):
    """A Russian browser buys 51 Stars («51 звезда») at 375 px: Russian throughout, no sideways scroll."""
    from playwright.sync_api import expect

    context = chromium.new_context(base_url=live_server.url, locale="ru-RU", viewport=PHONE,
                                   is_mobile=True, has_touch=True)
    context.set_default_timeout(15_000)
    try:
        tab = context.new_page()
        tab.goto("/")
        expect(tab.get_by_role("heading", level=1)).to_have_text("Купить Звёзды Telegram")
        _no_horizontal_scroll(tab)
        tab.get_by_label("Своё количество звёзд").fill("51")
        tab.get_by_role("button", name="Выбрать").click()

        expect(tab.get_by_role("heading", level=1)).to_have_text("Кому отправить звёзды?")
        _no_horizontal_scroll(tab)
        tab.get_by_label("ID пользователя Telegram или @username").fill("@" + "W" * 32)
        tab.get_by_role("button", name="Проверить аккаунт").click()
        expect(tab.get_by_role("heading", level=1)).to_contain_text("всё верно?")
        _no_horizontal_scroll(tab)
        tab.get_by_role("link", name="Изменить", exact=True).click()
        tab.get_by_label("ID пользователя Telegram или @username").fill("@sandbox_ok")
        tab.get_by_role("button", name="Проверить аккаунт").click()
        expect(tab.get_by_role("heading", level=1)).to_have_text("Пополняем @sandbox_ok — всё верно?")
        expect(tab.get_by_label("Тестовая оплата (песочница)")).to_be_checked()
        _no_horizontal_scroll(tab)
        tab.get_by_role("button", name="Да, продолжить").click()

        expect(tab.get_by_role("button", name="Имитировать оплату (тестовый режим)")).to_be_visible()
        _no_horizontal_scroll(tab)
        tab.get_by_role("button", name="Имитировать оплату (тестовый режим)").click()

        order = Order.objects.get()
        message = tab.locator("[data-status-message]")
        expect(message).to_have_text(f"✅ 51 звезда отправлена @sandbox_ok. Заказ #{order.reference}")
        expect(tab.locator("[data-status-label]")).to_have_text("Доставлен")
        _no_horizontal_scroll(tab)
        status_url = tab.url

        tab.get_by_role("button", name="EN", exact=True).click()
        expect(message).to_have_text(f"✅ 51 Stars sent to @sandbox_ok. Order #{order.reference}")
        assert tab.url == status_url
        tab.get_by_role("button", name="RU", exact=True).click()
        expect(message).to_contain_text("51 звезда отправлена")
        tab.get_by_role("link", name="Условия", exact=True).click()
        expect(tab.get_by_role("heading", level=1)).to_have_text("Условия продажи")
        _no_horizontal_scroll(tab)
    finally:
        context.close()
