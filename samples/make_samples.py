"""Write the sample inputs: partners.xlsx (EDIN), invoicebox.csv (Invoicebox) and diadoc.xlsx (Kontur.Diadoc).

Run: python samples/make_samples.py
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import xlsxwriter
from stdnum.ua import edrpou, rntrc

HERE = Path(__file__).parent


def edrpou_code(body: str) -> str:
    """A valid EDRPOU from its first seven digits."""
    return body + edrpou.calc_check_digit(body)


def rnokpp_code(body: str) -> str:
    """A valid RNOKPP (a sole trader's tax number) from its first nine digits."""
    return body + rntrc.calc_check_digit(body)


def wrong_check_digit(code: str) -> str:
    return code[:-1] + str((int(code[-1]) + 1) % 10)


# (code, name, email, contact person, phone, comment). Codes go into the workbook as NUMBERS, the way
# an office spreadsheet keeps them, so those beginning with 0 lose it; the tool pads them back.
PARTNERS: list[tuple[str, str, str, str, str, str]] = [
    (edrpou_code("0453331"), 'ТОВ "Альфа-Трейд"', "office@alfa-trade.com.ua", "Петренко Іван", "+380 44 201 10 01", ""),
    (edrpou_code("3285596"), 'ПП "Бета Логістик"', "info@beta-logistic.com.ua", "Коваленко Олена", "+380 50 311 20 02",
     "постачальник з 2019"),
    (edrpou_code("2187530"), 'ТОВ "Гамма Агро"', "buh@gamma-agro.ua", "Шевченко Петро", "+380 67 402 30 03", ""),
    (edrpou_code("0015874"), 'АТ "Дельта Енерго"', "edo@delta-energo.com.ua", "Бондаренко Марія", "+380 44 503 40 04",
     "лише ЕДО"),
    (edrpou_code("4012345"), 'ТОВ "Епсилон Фуд"', "Sales@Epsilon-Food.UA", "Ткаченко Андрій", "+380 63 604 50 05", ""),
    (edrpou_code("3956781"), 'ТОВ "Зета Буд"', "zeta.bud@zeta-bud.com.ua", "Кравченко Ольга", "+380 97 705 60 06", ""),
    (edrpou_code("0732104"), 'ПрАТ "Ета Фарм"', "docs@eta-pharm.ua", "Олійник Сергій", "+380 44 806 70 07",
     "-5% знижка до кінця року"),
    (rnokpp_code("301234567"), "ФОП Мельник Тарас Богданович", "taras.melnyk@ukr-mail.com.ua", "Мельник Тарас",
     "+380 66 907 80 08", "фізична особа-підприємець"),
    (edrpou_code("2498761"), 'ТОВ "Тета Сервіс"', "service@teta-service.com.ua", "Лисенко Наталія",
     "+380 50 108 90 09", ""),
    (edrpou_code("3612098"), 'ТОВ "Йота Транс"', "  logistics@iota-trans.com.ua ", "Мороз Василь",
     "+380 67 209 01 10", "адреса з пробілами"),
    (edrpou_code("0098213"), 'ДП "Каппа"', "kappa@kappa-dp.com.ua", "Савченко Юлія", "+380 44 310 12 11", ""),
    (edrpou_code("4398120"), 'ТОВ "Лямбда Софт"', "hello@lambda-soft.com.ua", "Руденко Максим", "+380 93 411 23 12",
     ""),
    (edrpou_code("2210987"), 'ТОВ "Мю Текстиль"', "order@mu-textile.ua", "Гончаренко Ірина", "+380 50 512 34 13", ""),
    (wrong_check_digit(edrpou_code("3344556")), 'ТОВ "Помилковий Код"', "mistake@wrong-code.com.ua",
     "Кузьменко Олег", "+380 67 613 45 14", "контрольна цифра не сходиться"),
    (edrpou_code("3021456"), 'ТОВ "Ню Меблі"', "nu-mebli@nu-mebli", "Павленко Аліна", "+380 97 714 56 15",
     "адреса без домену верхнього рівня"),
    (edrpou_code("0567432"), 'ТОВ "Кси Пак"', "pack@ksi-pack.com.ua", "Кравець Дмитро", "+380 44 815 67 16", ""),
    (edrpou_code("3789012"), 'ТОВ "Омікрон Авто"', "auto@omicron-auto.com.ua", "Поліщук Тетяна", "+380 63 916 78 17",
     ""),
    (edrpou_code("2654309"), 'ПП "Пі Принт"', "print@pi-print.ua", "Білик Роман", "+380 50 117 89 18", ""),
    (edrpou_code("4156723"), 'ТОВ "Ро Хім"', "chem@rho-chem.com.ua", "Захарченко Леся", "+380 67 218 90 19", ""),
    (rnokpp_code("285014321"), "ФОП Сидоренко Оксана Петрівна", "oksana.sydorenko@fop-mail.com.ua",
     "Сидоренко Оксана", "+380 66 319 01 20", ""),
    (edrpou_code("0453331"), 'ТОВ "Альфа-Трейд"', "office@alfa-trade.com.ua", "Петренко Іван", "+380 44 201 10 01",
     "повтор першого рядка"),
    (edrpou_code("3901876"), 'ТОВ "Тау Електро"', "electro@tau-electro.com.ua", "Мартинюк Богдан",
     "+380 93 420 12 21", ""),
    (edrpou_code("2345019"), 'ТОВ "Іпсилон Агро"', "agro@upsilon-agro.ua", "Ковальчук Віра", "+380 50 521 23 22", ""),
    (edrpou_code("4481230"), 'ТОВ "Фі Маркет"', "market@phi-market.com.ua", "Дмитренко Ігор", "+380 67 622 34 23", ""),
    (edrpou_code("0912345"), 'ТОВ "Хі Дистрибуція"', "distr@chi-distr.com.ua", "Антоненко Софія",
     "+380 44 723 45 24", ""),
]

HEADERS = ["ЄДРПОУ", "Назва", "Email", "Контактна особа", "Телефон", "Коментар"]


def write_partners(path: Path) -> None:
    book = xlsxwriter.Workbook(str(path))
    book.set_properties({"title": "Партнери для запрошення", "created": datetime(2024, 6, 1, 9, 0, 0)})
    bold = book.add_format({"bold": True})
    sheet = book.add_worksheet("Партнери")
    sheet.write_row(0, 0, HEADERS, bold)
    for r, (code, *texts) in enumerate(PARTNERS, start=1):
        sheet.write_number(r, 0, int(code))  # a number: 04533319 shows as 4533319, as in real files
        for c, text in enumerate(texts, start=1):
            if text:
                sheet.write_string(r, c, text)
    sheet.set_column(0, 0, 12)
    sheet.set_column(1, 2, 34)
    sheet.set_column(3, 5, 24)
    sheet.freeze_panes(1, 0)
    book.close()


# Invoicebox: shops to invite by e-mail; only the e-mail column is used, the others are kept as they are.
SHOPS: list[tuple[str, str, str]] = [
    ("shop@flowers-online.ru", "Цветы онлайн", ""),
    ("orders@knigi-market.ru", "Книжный рынок", "крупный клиент"),
    ("Info@Tea-House.RU", "Чайный дом", "домен в верхнем регистре"),
    ("sales@sport-tovary.ru", "Спорттовары", ""),
    ("hello@coffee-point.ru", "Кофе Поинт", ""),
    ("manager@detskiy-mir-shop.ru", "Детский магазин", ""),
    ("mail@avtozapchasti-24.ru", "Автозапчасти 24", ""),
    ("shop@flowers-online", "Цветы (ошибка)", "адрес без домена верхнего уровня"),
    ("zakaz@eco-produkty.ru", "Эко продукты", ""),
    ("SHOP@flowers-online.ru", "Цветы онлайн", "повтор: тот же адрес в другом регистре"),
    ("office@stroy-materialy.ru", "Стройматериалы", ""),
    ("support@gadget-store.ru", "Магазин гаджетов", ""),
    ("kontakt@zoo-mir.ru", "Зоомир", ""),
    ("  info@odezhda-style.ru ", "Одежда стиль", "адрес с пробелами"),
    ("partner@tehnika-dom.ru", "Техника для дома", ""),
]


def write_invoicebox(path: Path) -> None:
    lines = ["Электронная почта;Название;Комментарий"]
    lines += [f"{email};{name};{comment}" for email, name, comment in SHOPS]
    # Excel on Russian Windows: "CSV (разделители - точка с запятой)" is cp1251 with CRLF.
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1251"))


# Kontur.Diadoc: counterparties by INN (and KPP), the sandbox's seeded organisations (batch/sandbox/README.md).
# (INN, KPP, name, e-mail, message). INNs and KPPs starting with 0 go in as numbers and lose it, as in real files.
COUNTERPARTIES: list[tuple[str, str, str, str, str]] = [
    ("7703000014", "770301001", "ООО «Контрагент 01»", "edo@kontragent01.ru", ""),
    ("7703000021", "770301001", "ООО «Контрагент 02»", "buh@kontragent02.ru", ""),
    ("7703000039", "", "ООО «Контрагент 03»", "", ""),
    ("7703000046", "770301001", "ООО «Контрагент 04»", "Office@Kontragent04.RU", ""),
    ("7703000053", "", "ООО «Контрагент 05»", "", "Добрый день! Предлагаем перейти на ЭДО с 1 числа."),
    ("0274001239", "027401001", "ООО «Башкирский Ноль»", "ufa@bashnol.ru", ""),
    ("7702001015", "770201001", "ООО «Уже Партнёр»", "", ""),
    ("7702001022", "", "ООО «Ждёт Ответа»", "", ""),
    ("7702001030", "", "ООО «Зовёт Нас»", "", ""),
    ("7702001047", "", "ООО «Отказал Нам»", "", ""),
    ("7702001061", "", "АО «Открытые Двери»", "", ""),
    ("7702001079", "", "ООО «Только Роуминг»", "", ""),
    ("7702001086", "", "ООО «Двойник»", "", ""),
    ("7702001093", "", "ПАО «Головной Офис»", "", ""),
    ("7702001093", "772643001", "ПАО «Головной Офис», филиал Север", "", ""),
    ("7702001103", "", "ООО «Две Головы»", "", ""),
    ("770200111103", "", "ИП Иванов Иван Иванович", "ivanov@ip-ivanov.ru", "Иван Иванович, ждём вас в Диадоке."),
    ("7704002014", "", "ООО «Только в ЕГРЮЛ 1»", "", ""),
    ("7704999991", "", "ООО «Нигде»", "", ""),
    ("7702001016", "", "ООО «Ошибка в ИНН»", "", ""),
    ("7703000014", "770301001", "ООО «Контрагент 01»", "", ""),
    ("7703000060", "", "ООО «Контрагент 06»", "buh@kontragent06", ""),
]
DIADOC_HEADERS = ["ИНН", "КПП", "Наименование", "Email", "Сообщение"]


def write_diadoc(path: Path) -> None:
    book = xlsxwriter.Workbook(str(path))
    book.set_properties({"title": "Контрагенты для приглашения", "created": datetime(2024, 6, 1, 9, 0, 0)})
    bold = book.add_format({"bold": True})
    sheet = book.add_worksheet("Контрагенты")
    sheet.write_row(0, 0, DIADOC_HEADERS, bold)
    for r, (inn, kpp, *texts) in enumerate(COUNTERPARTIES, start=1):
        for c, code in enumerate((inn, kpp)):
            if code.startswith("0"):
                sheet.write_number(r, c, int(code))  # 0274001239 shows as 274001239, as in real files
            elif code:
                sheet.write_string(r, c, code)
        for c, text in enumerate(texts, start=2):
            if text:
                sheet.write_string(r, c, text)
    sheet.set_column(0, 1, 14)
    sheet.set_column(2, 4, 36)
    sheet.freeze_panes(1, 0)
    book.close()


def main() -> None:
    write_partners(HERE / "partners.xlsx")
    write_invoicebox(HERE / "invoicebox.csv")
    write_diadoc(HERE / "diadoc.xlsx")


if __name__ == "__main__":
    main()
