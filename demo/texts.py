"""Seeded generator of telephony-like Russian sentences for the demo model.

Sentences are drawn from many templates filled from hand-written word lists, with every
number spelled out in Russian words, then normalised to T-one's alphabet, and, for an open
vocabulary, from hunspell-ru's lexicon (``demo/lexicon.py``): a share of the sentences are
runs of lexicon words, so the model learns letters from sound rather than whole phrases.

The sentence space is split into train and test by a hash of the final sentence text, and
the lexicon by a hash of each word, so the same sentence can never be produced for both
splits, whatever the seeds, and test sentences hold words no training text has.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Callable

from num2words import num2words

from demo.lexicon import Lexicon, draw_words, load_lexicon
from sweep.data.text import normalize

SPLITS = ("train", "test")
# Share of the sentence space that belongs to the test split (by hash, not by draw).
TEST_PERCENT = 10
MIN_WORDS = 2
MAX_WORDS = 12
# Share of each split's sentences that are runs of lexicon words (the rest are templates).
LEXICON_SHARE = {"train": 0.5, "test": 0.35}
LEXICON_WORDS = (2, 6)
# In a test lexicon sentence, the chance that a word is one the training text never has.
UNSEEN_SHARE = 0.55


def _words(block: str) -> tuple[str, ...]:
    return tuple(block.split())


# ---------------------------------------------------------------------------------------
# Word lists. Names and places are lower-case, as the transcripts are.
# ---------------------------------------------------------------------------------------

MALE_NAMES = _words("""
александр алексей анатолий андрей антон аркадий арсений артём борис вадим валентин валерий
василий виктор виталий владимир владислав всеволод вячеслав геннадий георгий глеб григорий
даниил денис дмитрий евгений егор захар иван игорь илья кирилл константин лев леонид максим
марк матвей михаил никита николай олег павел пётр роман руслан савелий семён сергей станислав
степан тимофей тимур фёдор филипп юрий ярослав эдуард эльдар рустам ринат артур самуил
""")
FEMALE_NAMES = _words("""
александра алина алла алёна алиса анастасия ангелина анна антонина валентина валерия вера
вероника виктория галина дарья диана евгения екатерина елена елизавета жанна зинаида зоя
инна ирина карина кира кристина ксения лариса лидия любовь людмила маргарита марина мария
надежда наталья нина оксана олеся ольга полина раиса регина светлана софия таисия тамара
татьяна ульяна эвелина юлия яна ярослава василиса милана снежана эльвира
""")
# Surnames whose feminine form adds "а" (иванов -> иванова) or turns "ий" into "ая".
SURNAMES_OV = _words("""
иванов петров сидоров смирнов кузнецов попов васильев соколов михайлов новиков фёдоров
морозов волков алексеев лебедев семёнов егоров павлов козлов степанов николаев орлов андреев
макаров никитин захаров зайцев соловьёв борисов яковлев григорьев романов воробьёв сергеев
фролов александров дмитриев королёв гусев киселёв ильин максимов поляков сорокин виноградов
ковалёв белов медведев антонов тарасов жуков баранов филиппов комаров давыдов беляев герасимов
богданов осипов сидорин матвеев титов марков миронов крылов куликов карпов власов мельников
денисов гаврилов тихонов казаков афанасьев данилов савельев тимофеев фомин чернов абрамов
мартынов ефимов федотов щербаков назаров калинин исаев чернышёв быков маслов родионов коновалов
лазарев воронин климов филатов пономарёв голубев кудрявцев прохоров наумов потапов журавлёв
овчинников трофимов леонов соболев ермаков колесников гончаров емельянов никифоров грачёв
котов гришин ефремов архипов громов кириллов малышев панов моисеев румянцев акимов кондратьев
бирюков горбунов анисимов ерёмин тихомиров галкин лукьянов михеев скворцов юдин белоусов
нестеров симонов прокофьев харитонов князев цветков левин митрофанов воронов аксёнов
софронов мальцев логинов горшков савин краснов майоров демидов елисеев рыбаков сафонов
""")
SURNAMES_SKIY = _words("""
ковальский лозинский савицкий яновский высоцкий успенский вишневский покровский троицкий
островский заречный соколовский лесной полянский брянский
""")
# Surnames that do not change with gender.
SURNAMES_FIXED = _words("""
шевченко ковальчук бондаренко ткаченко кравченко коваленко олейник мельник гуревич дзюба
черных седых белых долгих сухих петренко литвиненко лысенко мирошниченко бойко
""")

PATRONYMICS_MALE = _words("""
александрович алексеевич андреевич борисович васильевич викторович владимирович дмитриевич
евгеньевич иванович игоревич михайлович николаевич олегович павлович петрович сергеевич
юрьевич анатольевич геннадьевич
""")
PATRONYMICS_FEMALE = _words("""
александровна алексеевна андреевна борисовна васильевна викторовна владимировна дмитриевна
евгеньевна ивановна игоревна михайловна николаевна олеговна павловна петровна сергеевна
юрьевна анатольевна геннадьевна
""")

CITIES = _words("""
москва санкт-петербург новосибирск екатеринбург казань нижний-новгород челябинск самара омск
ростов-на-дону уфа красноярск воронеж пермь волгоград краснодар саратов тюмень тольятти ижевск
барнаул ульяновск иркутск хабаровск ярославль владивосток махачкала томск оренбург кемерово
новокузнецк рязань астрахань пенза липецк киров чебоксары тула калининград курск ставрополь
улан-удэ тверь магнитогорск сочи иваново брянск белгород сургут владимир архангельск чита
смоленск калуга волжский орёл череповец вологда мурманск тамбов стерлитамак кострома петрозаводск
новороссийск йошкар-ола таганрог сыктывкар нальчик шахты дзержинск орск нижневартовск
""")
# City names after the preposition "в" (prepositional case) for a handful of frequent ones.
CITIES_IN = _words("""
москве петербурге новосибирске екатеринбурге казани самаре омске уфе красноярске воронеже
перми волгограде краснодаре саратове тюмени ижевске барнауле иркутске хабаровске ярославле
владивостоке томске оренбурге рязани астрахани пензе липецке туле курске твери сочи брянске
белгороде сургуте архангельске смоленске калуге мурманске вологде костроме
""")
# Street names in the genitive (after улица/проспект/переулок): any street type agrees.
STREETS_GEN = _words("""
ленина гагарина пушкина мира победы кирова чехова горького лермонтова толстого маяковского
чапаева свердлова куйбышева жукова суворова кутузова дзержинского фрунзе калинина королёва
циолковского менделеева ломоносова тургенева некрасова гоголя крылова есенина шолохова
мичурина павлова попова вавилова титова комарова зои-космодемьянской матросова космонавтов
строителей энтузиастов металлургов железнодорожников ветеранов пионеров победителей
""")
# Adjective street names: feminine, agree with "улица".
STREETS_ADJ = _words("""
садовая центральная школьная лесная новая советская молодёжная полевая набережная луговая
заречная зелёная солнечная вокзальная рабочая почтовая комсомольская первомайская
октябрьская красноармейская пролетарская береговая озёрная степная парковая цветочная
трудовая заводская речная сиреневая рябиновая берёзовая кленовая вишнёвая тополиная
""")
STREET_TYPES = _words("улица проспект переулок бульвар проезд шоссе")

PRODUCTS = _words("""
телефон ноутбук планшет холодильник телевизор пылесос кондиционер принтер монитор роутер
модем смартфон наушники колонка чайник микроволновка стиральная-машина посудомоечная-машина
утюг фен кофеварка мультиварка духовка плита обогреватель вентилятор блендер миксер сканер
фотоаппарат видеокамера часы браслет зарядка кабель аккумулятор диван шкаф стол кресло матрас
кровать комод велосипед самокат палатка чемодан рюкзак куртка ботинки кроссовки пальто
""")
SERVICES = _words("""
интернет тариф подписка страховка доставка кредит вклад депозит ипотека рассрочка карта
гарантия установка подключение обслуживание роуминг антивирус телевидение абонемент
""")
# Accusative of feminine services where it differs (карта -> карту).
SERVICES_ACC = {
    "подписка": "подписку", "страховка": "страховку", "доставка": "доставку",
    "ипотека": "ипотеку", "рассрочка": "рассрочку", "карта": "карту",
    "гарантия": "гарантию", "установка": "установку",
}
BANK_WORDS = _words("""
баланс платёж перевод счёт списание начисление комиссия задолженность лимит кешбэк процент
выписка квитанция чек пароль код пин-код логин приложение личный-кабинет сообщение уведомление
""")
COMPANIES = _words("""
ромашка вектор горизонт альфа омега сигма меридиан восток запад северный-ветер радуга
прогресс надежда гарант стандарт импульс кристалл феникс орион атлант бриз аврора
""")
MONTHS_GEN = _words("""
января февраля марта апреля мая июня июля августа сентября октября ноября декабря
""")
WEEKDAYS_ACC = _words("понедельник вторник среду четверг пятницу субботу воскресенье")
DAY_PARTS = _words("утром днём вечером ночью завтра сегодня послезавтра вчера")
GREETINGS = (
    "здравствуйте", "добрый день", "добрый вечер", "доброе утро", "алло", "алло здравствуйте",
    "да слушаю вас", "приветствую вас",
)
POLITE = (
    "пожалуйста", "будьте добры", "подскажите пожалуйста", "скажите пожалуйста",
    "если можно", "извините", "простите",
)
OPERATOR_LINES = (
    "оператор {fname} слушаю вас",
    "меня зовут {fname} чем могу помочь",
    "компания {company} оператор {fname} здравствуйте",
    "служба поддержки {fname} добрый день",
    "вы позвонили в компанию {company}",
    "ваш звонок очень важен для нас",
    "оставайтесь на линии оператор скоро ответит",
    "спасибо за ожидание {fname} слушаю",
    "назовите пожалуйста ваше имя и фамилию",
    "назовите пожалуйста номер договора",
    "продиктуйте пожалуйста номер телефона",
    "уточните пожалуйста адрес доставки",
    "подскажите дату рождения владельца",
    "одну минуту я проверю информацию",
    "подождите пожалуйста не кладите трубку",
    "я переведу вас на специалиста",
    "могу ли я ещё чем нибудь помочь",
    "спасибо за обращение всего доброго",
    "ваша заявка принята в работу",
    "мастер приедет {weekday} {daypart}",
    "специалист свяжется с вами {daypart}",
    "разговор записывается для улучшения качества обслуживания",
    "к сожалению эта услуга сейчас недоступна",
    "повторите пожалуйста я вас плохо слышу",
    "вас плохо слышно перезвоните пожалуйста",
    "ожидайте ответа оператора",
    "ответ придёт вам в сообщении",
)
CLIENT_LINES = (
    "да это я",
    "нет спасибо не нужно",
    "да конечно",
    "хорошо спасибо",
    "минуточку сейчас посмотрю",
    "я хотел бы узнать баланс",
    "у меня не работает {product}",
    "у меня сломался {product}",
    "я заказывал {product} но его не привезли",
    "хочу вернуть {product}",
    "хочу подключить {service}",
    "как отключить {service}",
    "мне нужно оформить {service_acc}",
    "я не могу войти в {bank_word}",
    "мне пришло странное сообщение",
    "почему с меня списали деньги",
    "я звоню по поводу заказа",
    "можно поговорить с оператором",
    "соедините меня с руководителем",
    "когда привезут мой заказ",
    "я уже звонил вчера",
    "мне никто не перезвонил",
    "интернет не работает с утра",
    "у меня пропала связь",
    "я в {city_in} сейчас",
    "я живу в {city_in}",
    "не могу дозвониться до вас",
    "подскажите режим работы офиса",
    "где ближайший пункт выдачи",
    "сколько стоит {product}",
    "есть ли в наличии {product}",
    "а можно побыстрее",
    "да записывайте",
    "нет это не мой номер",
    "я перезвоню позже",
    "спасибо до свидания",
    "алло вы меня слышите",
)


# ---------------------------------------------------------------------------------------
# Numbers spelled out in Russian.
# ---------------------------------------------------------------------------------------


def spell(number: int, *, gender: str = "m", case: str = "nominative") -> str:
    """Cardinal number in words; gender matters for 1 and 2 (одна, две)."""
    return str(num2words(number, lang="ru", gender=gender, case=case))


def spell_ordinal(number: int, *, gender: str = "m", case: str = "nominative") -> str:
    return str(num2words(number, lang="ru", to="ordinal", gender=gender, case=case))


def plural(number: int, one: str, few: str, many: str) -> str:
    """Russian noun form after a cardinal: 1 рубль, 2 рубля, 5 рублей, 11 рублей."""
    n = abs(number) % 100
    if 11 <= n <= 14:
        return many
    n %= 10
    if n == 1:
        return one
    if 2 <= n <= 4:
        return few
    return many


def spell_digits(digits: str) -> str:
    """Digit by digit, as people dictate codes: 0 4 7 -> ноль четыре семь."""
    return " ".join(spell(int(d)) for d in digits)


def spell_group(digits: str) -> str:
    """A dictated group such as "05" or "47": a leading zero is said as ноль."""
    if len(digits) > 1 and digits[0] == "0":
        return spell(0) + " " + spell_group(digits[1:])
    return spell(int(digits))


# ---------------------------------------------------------------------------------------
# Slot fillers: each takes the RNG and returns text (numbers already spelled out).
# ---------------------------------------------------------------------------------------


def _phone(rng: random.Random) -> str:
    code = rng.choice(("9", "4", "8")) + f"{rng.randrange(100):02d}"
    parts = [code, f"{rng.randrange(1000):03d}", f"{rng.randrange(100):02d}",
             f"{rng.randrange(100):02d}"]
    style = rng.random()
    if style < 0.25:
        # Short local number, as in "двести тридцать четыре пятьдесят шесть семьдесят".
        return " ".join(spell_group(p) for p in parts[1:])
    prefix = rng.choice(("восемь", "плюс семь", ""))
    # Some people dictate every digit, most say the number in groups.
    digits = style < 0.4
    body = spell_digits("".join(parts)) if digits else " ".join(spell_group(p) for p in parts)
    return f"{prefix} {body}".strip()


def _amount(rng: random.Random) -> str:
    scale = rng.choice((10, 100, 1000, 10000, 100000, 1000000))
    rubles = rng.randrange(1, scale)
    if scale >= 1000 and rng.random() < 0.6:
        rubles -= rubles % rng.choice((10, 100, 1000))
        rubles = max(rubles, 1)
    words = spell(rubles)
    if words.startswith("одна тысяча") and rng.random() < 0.7:
        words = words.removeprefix("одна ")  # people say "тысяча рублей"
    text = f"{words} {plural(rubles, 'рубль', 'рубля', 'рублей')}"
    if rng.random() < 0.25:
        kop = rng.randrange(1, 100)
        text += f" {spell(kop, gender='f')} {plural(kop, 'копейка', 'копейки', 'копеек')}"
    return text


def _count(rng: random.Random) -> str:
    n = rng.choice((rng.randrange(1, 13), rng.randrange(1, 100), rng.randrange(1, 1000)))
    noun = rng.choice((
        ("m", "товар", "товара", "товаров"), ("f", "штука", "штуки", "штук"),
        ("f", "коробка", "коробки", "коробок"), ("m", "заказ", "заказа", "заказов"),
        ("f", "позиция", "позиции", "позиций"), ("m", "день", "дня", "дней"),
        ("f", "минута", "минуты", "минут"), ("m", "месяц", "месяца", "месяцев"),
        ("m", "год", "года", "лет"), ("m", "человек", "человека", "человек"),
        ("m", "гигабайт", "гигабайта", "гигабайт"), ("m", "процент", "процента", "процентов"),
        ("m", "звонок", "звонка", "звонков"), ("m", "балл", "балла", "баллов"),
    ))
    gender, one, few, many = noun
    return f"{spell(n, gender=gender)} {plural(n, one, few, many)}"


def _date(rng: random.Random, *, case: str = "genitive") -> str:
    day = rng.randrange(1, 32)
    text = f"{spell_ordinal(day, gender='n', case=case)} {rng.choice(MONTHS_GEN)}"
    if rng.random() < 0.3:
        year = rng.randrange(1950, 2031)
        text += f" {spell_ordinal(year, case='genitive')} года"
    return text


def _birth_date(rng: random.Random, *, case: str = "nominative") -> str:
    day = rng.randrange(1, 29)
    year = rng.randrange(1940, 2008)
    return (f"{spell_ordinal(day, gender='n', case=case)} {rng.choice(MONTHS_GEN)} "
            f"{spell_ordinal(year, case='genitive')} года")


def _time(rng: random.Random) -> str:
    hour = rng.randrange(0, 24)
    minute = rng.choice((0, 0, 15, 30, 45, rng.randrange(60)))
    style = rng.random()
    if style < 0.4:
        text = f"{spell(hour)} {plural(hour, 'час', 'часа', 'часов')}"
        if minute:
            text += f" {spell(minute, gender='f')} {plural(minute, 'минута', 'минуты', 'минут')}"
        return text
    # Clock style: "десять тридцать", "девять ноль пять".
    mins = "ноль ноль" if minute == 0 else spell_group(f"{minute:02d}")
    return f"{spell(hour)} {mins}"


def _house(rng: random.Random) -> str:
    n = rng.choice((rng.randrange(1, 30), rng.randrange(1, 200)))
    text = f"дом {spell(n)}"
    extra = rng.random()
    if extra < 0.2:
        k = rng.randrange(1, 6)
        text += f" корпус {spell(k)}"
    elif extra < 0.3:
        text += f" строение {spell(rng.randrange(1, 5))}"
    elif extra < 0.4:
        text += f" дробь {spell(rng.randrange(1, 10))}"
    return text


def _flat(rng: random.Random) -> str:
    return f"квартира {spell(rng.randrange(1, 400))}"


def _street(rng: random.Random) -> str:
    if rng.random() < 0.35:
        adj = rng.choice(STREETS_ADJ)
        return f"улица {adj}" if rng.random() < 0.5 else f"{adj} улица"
    return f"{rng.choice(STREET_TYPES)} {rng.choice(STREETS_GEN)}"


def _address(rng: random.Random) -> str:
    parts = [_street(rng), _house(rng)]
    if rng.random() < 0.6:
        parts.append(_flat(rng))
    if rng.random() < 0.25:
        parts.insert(0, f"город {rng.choice(CITIES)}")
    return " ".join(parts)


def _person(rng: random.Random) -> tuple[str, str, str]:
    """First name, surname and patronymic of one randomly gendered person."""
    female = rng.random() < 0.5
    first = rng.choice(FEMALE_NAMES if female else MALE_NAMES)
    kind = rng.random()
    if kind < 0.75:
        surname = rng.choice(SURNAMES_OV)
        surname = surname + "а" if female else surname
    elif kind < 0.87:
        surname = rng.choice(SURNAMES_SKIY)
        if female:
            surname = surname[:-2] + ("ая" if surname.endswith(("ий", "ый")) else "а")
    else:
        surname = rng.choice(SURNAMES_FIXED)
    patronymic = rng.choice(PATRONYMICS_FEMALE if female else PATRONYMICS_MALE)
    return first, surname, patronymic


def _full_name(rng: random.Random) -> str:
    first, surname, patronymic = _person(rng)
    style = rng.random()
    if style < 0.4:
        return f"{surname} {first} {patronymic}"
    if style < 0.7:
        return f"{first} {surname}"
    if style < 0.85:
        return f"{first} {patronymic}"
    return surname


def _order_number(rng: random.Random) -> str:
    length = rng.randrange(4, 9)
    digits = "".join(str(rng.randrange(10)) for _ in range(length))
    if rng.random() < 0.5:
        return spell_digits(digits[: rng.randrange(3, 7)])
    # Grouped in pairs/triples the way operators read them back.
    groups = []
    while digits:
        size = rng.choice((2, 3))
        groups.append(digits[:size])
        digits = digits[size:]
    return " ".join(spell_group(g) for g in groups)


def _code(rng: random.Random) -> str:
    return spell_digits("".join(str(rng.randrange(10)) for _ in range(rng.choice((4, 4, 5, 6)))))


# ---------------------------------------------------------------------------------------
# Templates.
# ---------------------------------------------------------------------------------------

_FILLERS: dict[str, Callable[[random.Random], str]] = {
    "phone": _phone,
    "amount": _amount,
    "count": _count,
    "date": _date,
    "date_nom": lambda rng: _date(rng, case="nominative"),
    "birth": _birth_date,
    "birth_gen": lambda rng: _birth_date(rng, case="genitive"),
    "time": _time,
    "address": _address,
    "street": _street,
    "house": _house,
    "flat": _flat,
    "name": _full_name,
    "fname": lambda rng: _person(rng)[0],
    "order": _order_number,
    "code": _code,
    "city": lambda rng: rng.choice(CITIES),
    "city_in": lambda rng: rng.choice(CITIES_IN),
    "product": lambda rng: rng.choice(PRODUCTS),
    "service": lambda rng: rng.choice(SERVICES),
    "service_acc": lambda rng: (lambda s: SERVICES_ACC.get(s, s))(rng.choice(SERVICES)),
    "bank_word": lambda rng: rng.choice(BANK_WORDS),
    "company": lambda rng: rng.choice(COMPANIES),
    "weekday": lambda rng: (lambda d: ("во " if d == "вторник" else "в ") + d)(
        rng.choice(WEEKDAYS_ACC)
    ),
    "daypart": lambda rng: rng.choice(DAY_PARTS),
    "greeting": lambda rng: rng.choice(GREETINGS),
    "polite": lambda rng: rng.choice(POLITE),
}

TEMPLATES: tuple[str, ...] = (
    # Phone numbers.
    "мой номер {phone}",
    "запишите номер {phone}",
    "перезвоните мне на номер {phone}",
    "{polite} мой телефон {phone}",
    "контактный телефон {phone}",
    "номер для связи {phone}",
    "звоню с номера {phone}",
    "второй номер {phone}",
    "это номер {phone}",
    # Money.
    "сумма к оплате {amount}",
    "с карты списали {amount}",
    "на счету осталось {amount}",
    "я перевёл {amount}",
    "ваш баланс {amount}",
    "стоимость услуги {amount}",
    "ежемесячный платёж составит {amount}",
    "задолженность {amount}",
    "вам вернут {amount}",
    "доставка стоит {amount}",
    "я оплатил {amount} {date}",
    "{product} стоит {amount}",
    "скидка составит {amount}",
    "лимит по карте {amount}",
    # Counts.
    "в заказе {count}",
    "мне нужно {count}",
    "срок доставки {count}",
    "осталось {count}",
    "я жду уже {count}",
    "у вас {count}",
    "по тарифу доступно {count}",
    # Dates and times.
    "доставка {date}",
    "заказ оформлен {date}",
    "встреча назначена на {date_nom}",
    "платёж нужно внести до {date}",
    "договор действует до {date}",
    "я звонил {date}",
    "мастер придёт {date} в {time}",
    "ждём вас {date} в {time}",
    "приходите в {time}",
    "перезвоните в {time}",
    "офис открывается в {time}",
    "запись на {date_nom} на {time}",
    "дата рождения {birth}",
    "я родился {birth_gen}",
    "я родилась {birth_gen}",
    "сегодня {date_nom}",
    "курьер будет {weekday} в {time}",
    "{weekday} в {time} вам удобно",
    # Addresses.
    "мой адрес {address}",
    "адрес доставки {address}",
    "я живу по адресу {address}",
    "привезите по адресу {street} {house}",
    "{address}",
    "{street} {house} {flat}",
    "город {city} {street} {house}",
    "пункт выдачи {street} {house}",
    "наш офис {street} {house}",
    "отправьте в город {city}",
    "я из города {city}",
    "я нахожусь в {city_in}",
    # Names.
    "меня зовут {name}",
    "владелец договора {name}",
    "получатель {name}",
    "{fname} сейчас на месте",
    "это {name}",
    "{greeting} это {name}",
    "{greeting} меня зовут {fname}",
    "карта оформлена на имя {name}",
    "фамилия имя отчество {name}",
    "я звоню от имени {name}",
    "мастер {fname} приедет {daypart}",
    "ваш менеджер {name}",
    # Order / contract numbers and codes.
    "номер заказа {order}",
    "мой заказ номер {order}",
    "договор номер {order}",
    "номер договора {order}",
    "лицевой счёт {order}",
    "номер заявки {order}",
    "трек номер {order}",
    "ваш код подтверждения {code}",
    "код из сообщения {code}",
    "продиктуйте код {code}",
    "последние цифры карты {code}",
    "номер обращения {order} от {date}",
    # Dialog turns and mixtures.
    "{greeting}",
    "{greeting} {polite} {client}",
    "{greeting} {operator}",
    "{operator}",
    "{client}",
    "{polite} {client}",
    "{client} {polite}",
    "{client} номер заказа {order}",
    "{greeting} {client}",
    "{client} {daypart}",
    "{operator} {polite}",
)

_LINE_SLOTS = {"operator": OPERATOR_LINES, "client": CLIENT_LINES}


def _fill(template: str, rng: random.Random) -> str:
    """Replace every {slot} in a template; dialog lines may hold slots themselves."""
    out = template
    for _ in range(3):  # nested slots (a dialog line with {fname}) resolve in a pass or two
        if "{" not in out:
            break
        pieces = out.split("{")
        result = [pieces[0]]
        for piece in pieces[1:]:
            slot, _, rest = piece.partition("}")
            if slot in _LINE_SLOTS:
                result.append(rng.choice(_LINE_SLOTS[slot]))
            else:
                result.append(_FILLERS[slot](rng))
            result.append(rest)
        out = "".join(result)
    return out


def split_of(sentence: str) -> str:
    """The split a normalised sentence belongs to, fixed by its hash alone."""
    digest = hashlib.blake2b(sentence.encode("utf-8"), digest_size=8).digest()
    return "test" if int.from_bytes(digest, "big") % 100 < TEST_PERCENT else "train"


def random_sentence(rng: random.Random) -> str:
    """One normalised sentence from a random template, of any split and length."""
    return normalize(_fill(rng.choice(TEMPLATES), rng), yo_to_ye=False)


@functools.lru_cache(maxsize=1)
def template_vocabulary(draws: int = 20000) -> frozenset[str]:
    """The words the templates speak (about 1,250): lexicon words among them are never
    test-only, since templates are spoken in both splits."""
    rng = random.Random("trt-sweep-demo-texts:vocabulary")
    words: set[str] = set()
    for _ in range(draws):
        words.update(random_sentence(rng).split())
    return frozenset(words)


def lexicon_sentence(rng: random.Random, split: str, lexicon: Lexicon) -> str:
    """A run of lexicon words; a test one holds at least one word unseen in training."""
    k = rng.randint(*LEXICON_WORDS)
    return " ".join(draw_words(lexicon, split, k, rng, UNSEEN_SHARE))


def _draw(rng: random.Random, split: str, make: Callable[[], str]) -> str:
    """The first sentence ``make`` gives that belongs to ``split`` and has 2-12 words.

    A lexicon run of training words could, in principle, spell a test template sentence:
    the hash rule refuses it like any other.
    """
    for _ in range(100000):
        sentence = make()
        if MIN_WORDS <= len(sentence.split()) <= MAX_WORDS and split_of(sentence) == split:
            return sentence
    raise RuntimeError(f"could not draw a {split} sentence; the space is too small")


def generate_sentences(n: int, seed: int, split: str, *, lexicon: bool = True) -> list[str]:
    """``n`` sentences of ``split``; the same arguments always give the same list.

    With ``lexicon`` (needs hunspell-ru), ``LEXICON_SHARE[split]`` of them are lexicon runs.
    Test sentences are distinct from each other; training sentences may repeat (short
    dialog turns do), but no sentence of one split can ever appear in the other.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    words = load_lexicon() if lexicon else None
    rng = random.Random(f"trt-sweep-demo-texts:{split}:{seed}")
    sentences: list[str] = []
    seen: set[str] = set()
    attempts = 0
    while len(sentences) < n:
        attempts += 1
        if attempts > 1000 * (n + 10):
            raise RuntimeError(f"could not draw {n} {split} sentences; the space is too small")
        # The kind is drawn once per sentence, so rejections cannot skew the mix.
        if words is not None and rng.random() < LEXICON_SHARE[split]:
            sentence = _draw(rng, split, lambda: lexicon_sentence(rng, split, words))
        else:
            sentence = _draw(rng, split, lambda: random_sentence(rng))
        if split == "test":
            if sentence in seen:
                continue
            seen.add(sentence)
        sentences.append(sentence)
    return sentences


def _main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Print generated demo sentences.")
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", choices=SPLITS, default="train")
    args = parser.parse_args()
    for sentence in generate_sentences(args.n, args.seed, args.split):
        print(sentence)


if __name__ == "__main__":
    _main()
