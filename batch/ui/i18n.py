"""The page's words in English and Ukrainian, and which language a request gets.

The status words inside the `role="status"` element (sent, skipped, …, finished, stopped) stay in English in
both languages: they are the results workbook's and the summary line's vocabulary, and part of SPEC §11.
"""

from __future__ import annotations

LANGUAGES = ("en", "uk")

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Invite partners",
        "intro": "Choose a configuration and a spreadsheet, validate it, then send the invitations.",
        "configuration": "Configuration",
        "spreadsheet": "Spreadsheet",
        "validate": "Validate",
        "send": "Send invitations",
        "resume_hint": "Sending again resumes: rows sent before are skipped, never sent twice.",
        "stop": "Stop",
        "download": "Download results",
        "templates": "Empty spreadsheet templates",
        "template_for": "Template for {provider}",
        "history": "Earlier runs",
        "no_history": "No runs yet.",
        "file": "File",
        "created": "Uploaded",
        "state": "State",
        "counts": "Counts",
        "open": "Open",
        "validation": "Validation",
        "nothing_sent": "Nothing was sent. Fix invalid rows in your spreadsheet and upload it again, or send now:"
                        " only valid rows are sent.",
        "run": "Sending invitations",
        "results": "Results",
        "row": "Row",
        "status": "Status",
        "detail": "Detail",
        "rows": "Rows, problems first",
        "page": "Page {page} of {pages}",
        "previous": "Previous",
        "next": "Next",
        "rows_per_second": "rows per second",
        "time_left": "time left",
        "done_of": "{done} of {total} rows",
        "validating": "Checking every row…",
        "need_you": "Rows that need you (failed and unknown)",
        "none_need_you": "No row failed and no outcome is unknown.",
        "next_steps": "What to do next",
        "next_finished": "Open the results workbook and filter the status column. Fix invalid rows in your "
                         "spreadsheet (not in the results) and upload it again.",
        "next_failed": "Rows that failed for the provider's or network's reasons can be sent again from the "
                       "command line with --retry-failed; look up unknown rows on the provider's side first.",
        "next_stopped": "The run stopped before every row was sent. Send again to resume: nothing is sent twice.",
        "error": "Could not continue",
        "back": "Upload another spreadsheet",
        "validate_again": "Validate again",
        "exit_code": "exit code {code}",
        "language": "Українська",
        "forbidden": "Forbidden: open the page from the link that `invite-batch ui` printed.",
        "too_large": "The file is larger than this configuration allows ({limit} bytes).",
        "bad_type": "Upload a .xlsx, .xls, .ods or .csv file.",
        "no_file": "Choose a spreadsheet first.",
        "bad_config": "Choose one of the configurations offered.",
        "busy": "This spreadsheet is already being validated or sent.",
        "not_found": "No such run.",
    },
    "uk": {
        "title": "Запросити партнерів",
        "intro": "Оберіть конфігурацію та таблицю, перевірте її, потім надішліть запрошення.",
        "configuration": "Конфігурація",
        "spreadsheet": "Таблиця",
        "validate": "Перевірити",
        "send": "Надіслати запрошення",
        "resume_hint": "Повторне надсилання продовжує роботу: надіслані раніше рядки пропускаються, "
                       "двічі нічого не надсилається.",
        "stop": "Зупинити",
        "download": "Завантажити результати",
        "templates": "Порожні шаблони таблиць",
        "template_for": "Шаблон для {provider}",
        "history": "Попередні запуски",
        "no_history": "Запусків ще не було.",
        "file": "Файл",
        "created": "Завантажено",
        "state": "Стан",
        "counts": "Підсумки",
        "open": "Відкрити",
        "validation": "Перевірка",
        "nothing_sent": "Нічого не надіслано. Виправте недійсні рядки у своїй таблиці й завантажте її знову "
                        "або надсилайте зараз: надсилаються лише дійсні рядки.",
        "run": "Надсилання запрошень",
        "results": "Результати",
        "row": "Рядок",
        "status": "Статус",
        "detail": "Деталі",
        "rows": "Рядки, спершу проблемні",
        "page": "Сторінка {page} з {pages}",
        "previous": "Попередня",
        "next": "Наступна",
        "rows_per_second": "рядків за секунду",
        "time_left": "залишилось",
        "done_of": "{done} з {total} рядків",
        "validating": "Перевіряємо кожен рядок…",
        "need_you": "Рядки, що потребують уваги (failed та unknown)",
        "none_need_you": "Жоден рядок не завершився помилкою, невідомих результатів немає.",
        "next_steps": "Що робити далі",
        "next_finished": "Відкрийте книгу результатів і відфільтруйте стовпець status. Виправте недійсні рядки "
                         "у своїй таблиці (не в результатах) і завантажте її знову.",
        "next_failed": "Рядки, що не пройшли через постачальника чи мережу, можна надіслати знову з командного "
                       "рядка з --retry-failed; рядки unknown спершу перевірте на боці постачальника.",
        "next_stopped": "Запуск зупинився до того, як усі рядки надіслано. Надішліть знову, щоб продовжити: "
                        "двічі нічого не надсилається.",
        "error": "Не вдалося продовжити",
        "back": "Завантажити іншу таблицю",
        "validate_again": "Перевірити знову",
        "exit_code": "код завершення {code}",
        "language": "English",
        "forbidden": "Заборонено: відкрийте сторінку за посиланням, яке надрукувала команда `invite-batch ui`.",
        "too_large": "Файл більший, ніж дозволяє ця конфігурація ({limit} байт).",
        "bad_type": "Завантажте файл .xlsx, .xls, .ods або .csv.",
        "no_file": "Спершу оберіть таблицю.",
        "bad_config": "Оберіть одну із запропонованих конфігурацій.",
        "busy": "Цю таблицю вже перевіряють або надсилають.",
        "not_found": "Такого запуску немає.",
    },
}


def choose(query: str | None, cookie: str | None, accept_language: str) -> str:
    """The `lang` query parameter, then the cookie the switch set, then the browser's preference, then English."""
    for pick in (query, cookie):
        if pick in LANGUAGES:
            return pick
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        ranked.append((-q, i, tag.strip().lower().split("-")[0]))
    for _, _, tag in sorted(ranked):
        if tag in LANGUAGES:
            return tag
    return "en"


def translator(lang: str) -> dict[str, str]:
    return STRINGS[lang]
