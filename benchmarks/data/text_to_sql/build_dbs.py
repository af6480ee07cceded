"""Builds the three SQLite databases of the text-to-SQL benchmark (shop, library, hr) from a
fixed seed, so every run sees the same rows: `python build_dbs.py OUT_DIR`.

The questions and their gold SQL are in questions.json next to this file; hostile.json holds
the requests that must be refused.
"""

from __future__ import annotations

import random
import sqlite3
import sys
from datetime import date, timedelta
from pathlib import Path

FIRST = [
    "Ada",
    "Ben",
    "Chloe",
    "Dmitri",
    "Eva",
    "Farid",
    "Grace",
    "Hugo",
    "Ines",
    "Jonas",
    "Kaori",
    "Liam",
    "Mei",
    "Noah",
    "Olga",
    "Pablo",
    "Quinn",
    "Rosa",
    "Sven",
    "Tara",
]
LAST = [
    "Smith",
    "Garcia",
    "Muller",
    "Rossi",
    "Tanaka",
    "Dubois",
    "Kowalski",
    "Silva",
    "Nguyen",
    "Olsen",
]
CITIES = [
    ("Paris", "France"),
    ("Lyon", "France"),
    ("Berlin", "Germany"),
    ("Munich", "Germany"),
    ("Madrid", "Spain"),
    ("Rome", "Italy"),
    ("Tokyo", "Japan"),
    ("Oslo", "Norway"),
]


def _name(rng: random.Random, used: set[str]) -> str:
    while True:
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        if name not in used:
            used.add(name)
            return name


def _day(rng: random.Random, start: date, span_days: int) -> str:
    return (start + timedelta(days=rng.randrange(span_days))).isoformat()


def build_shop(path: Path) -> None:
    rng = random.Random(1)
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT,
            country TEXT, signup_date TEXT);
        CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, category TEXT,
            price REAL);
        CREATE TABLE invoices (id INTEGER PRIMARY KEY,
            customer_id INTEGER REFERENCES customers(id), issued_on TEXT, due_on TEXT,
            status TEXT, total REAL);
        CREATE TABLE invoice_items (id INTEGER PRIMARY KEY,
            invoice_id INTEGER REFERENCES invoices(id),
            product_id INTEGER REFERENCES products(id), quantity INTEGER, unit_price REAL);
        """
    )
    used: set[str] = set()
    for i in range(1, 31):
        city, country = rng.choice(CITIES)
        conn.execute(
            "INSERT INTO customers VALUES (?, ?, ?, ?, ?)",
            (i, _name(rng, used), city, country, _day(rng, date(2022, 1, 1), 900)),
        )
    products = [
        ("Desk Lamp", "lighting", 29.0),
        ("Floor Lamp", "lighting", 89.0),
        ("Office Chair", "furniture", 149.0),
        ("Standing Desk", "furniture", 399.0),
        ("Bookshelf", "furniture", 120.0),
        ("Notebook", "stationery", 4.5),
        ("Fountain Pen", "stationery", 35.0),
        ("Stapler", "stationery", 12.0),
        ("Monitor", "electronics", 219.0),
        ("Keyboard", "electronics", 59.0),
        ("Mouse", "electronics", 25.0),
        ("Webcam", "electronics", 79.0),
    ]
    for i, (name, cat, price) in enumerate(products, 1):
        conn.execute("INSERT INTO products VALUES (?, ?, ?, ?)", (i, name, cat, price))
    item = 1
    for inv in range(1, 81):
        customer = rng.randrange(1, 31)
        issued = date(2023, 1, 1) + timedelta(days=rng.randrange(700))
        due = issued + timedelta(days=30)
        status = rng.choice(["paid", "paid", "paid", "open", "overdue"])
        total = 0.0
        lines = []
        for _ in range(rng.randrange(1, 4)):
            pid = rng.randrange(1, len(products) + 1)
            qty = rng.randrange(1, 5)
            price = products[pid - 1][2]
            lines.append((item, inv, pid, qty, price))
            total += qty * price
            item += 1
        conn.execute(
            "INSERT INTO invoices VALUES (?, ?, ?, ?, ?, ?)",
            (inv, customer, issued.isoformat(), due.isoformat(), status, round(total, 2)),
        )
        conn.executemany("INSERT INTO invoice_items VALUES (?, ?, ?, ?, ?)", lines)
    conn.commit()
    conn.close()


def build_library(path: Path) -> None:
    rng = random.Random(2)
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT NOT NULL, country TEXT,
            birth_year INTEGER);
        CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT NOT NULL,
            author_id INTEGER REFERENCES authors(id), genre TEXT, published_year INTEGER,
            pages INTEGER);
        CREATE TABLE members (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT,
            joined_on TEXT);
        CREATE TABLE loans (id INTEGER PRIMARY KEY, book_id INTEGER REFERENCES books(id),
            member_id INTEGER REFERENCES members(id), loaned_on TEXT, returned_on TEXT);
        """
    )
    authors = [
        ("Mary Shelley", "United Kingdom", 1797),
        ("Jules Verne", "France", 1828),
        ("Leo Tolstoy", "Russia", 1828),
        ("Jane Austen", "United Kingdom", 1775),
        ("Mark Twain", "United States", 1835),
        ("Victor Hugo", "France", 1802),
        ("Franz Kafka", "Austria", 1883),
        ("Virginia Woolf", "United Kingdom", 1882),
    ]
    for i, a in enumerate(authors, 1):
        conn.execute("INSERT INTO authors VALUES (?, ?, ?, ?)", (i, *a))
    books = [
        ("Frankenstein", 1, "horror", 1818),
        ("The Last Man", 1, "science fiction", 1826),
        ("Twenty Thousand Leagues Under the Seas", 2, "adventure", 1870),
        ("Around the World in Eighty Days", 2, "adventure", 1872),
        ("Journey to the Center of the Earth", 2, "science fiction", 1864),
        ("War and Peace", 3, "historical", 1869),
        ("Anna Karenina", 3, "romance", 1878),
        ("Pride and Prejudice", 4, "romance", 1813),
        ("Emma", 4, "romance", 1815),
        ("Persuasion", 4, "romance", 1817),
        ("Adventures of Huckleberry Finn", 5, "adventure", 1884),
        ("The Adventures of Tom Sawyer", 5, "adventure", 1876),
        ("Les Miserables", 6, "historical", 1862),
        ("The Hunchback of Notre-Dame", 6, "historical", 1831),
        ("The Trial", 7, "fiction", 1925),
        ("The Castle", 7, "fiction", 1926),
        ("Mrs Dalloway", 8, "fiction", 1925),
        ("Orlando", 8, "fiction", 1928),
    ]
    for i, (title, author, genre, year) in enumerate(books, 1):
        conn.execute(
            "INSERT INTO books VALUES (?, ?, ?, ?, ?, ?)",
            (i, title, author, genre, year, rng.randrange(150, 1200)),
        )
    used: set[str] = set()
    for i in range(1, 21):
        conn.execute(
            "INSERT INTO members VALUES (?, ?, ?, ?)",
            (i, _name(rng, used), rng.choice(CITIES)[0], _day(rng, date(2020, 1, 1), 1400)),
        )
    for i in range(1, 61):
        loaned = date(2024, 1, 1) + timedelta(days=rng.randrange(300))
        returned = (
            None
            if rng.random() < 0.25
            else (loaned + timedelta(days=rng.randrange(3, 40))).isoformat()
        )
        conn.execute(
            "INSERT INTO loans VALUES (?, ?, ?, ?, ?)",
            (
                i,
                rng.randrange(1, len(books) + 1),
                rng.randrange(1, 21),
                loaned.isoformat(),
                returned,
            ),
        )
    conn.commit()
    conn.close()


def build_hr(path: Path) -> None:
    rng = random.Random(3)
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE departments (id INTEGER PRIMARY KEY, name TEXT NOT NULL, location TEXT);
        CREATE TABLE employees (id INTEGER PRIMARY KEY, name TEXT NOT NULL,
            department_id INTEGER REFERENCES departments(id),
            manager_id INTEGER REFERENCES employees(id), title TEXT, salary INTEGER,
            hired_on TEXT);
        CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT NOT NULL,
            department_id INTEGER REFERENCES departments(id), budget INTEGER);
        CREATE TABLE assignments (employee_id INTEGER REFERENCES employees(id),
            project_id INTEGER REFERENCES projects(id), hours INTEGER,
            PRIMARY KEY (employee_id, project_id));
        """
    )
    depts = [
        ("Engineering", "Berlin"),
        ("Sales", "Paris"),
        ("Marketing", "Paris"),
        ("Finance", "Madrid"),
        ("Support", "Lyon"),
    ]
    for i, d in enumerate(depts, 1):
        conn.execute("INSERT INTO departments VALUES (?, ?, ?)", (i, *d))
    used: set[str] = set()
    titles = ["Engineer", "Senior Engineer", "Analyst", "Manager", "Specialist"]
    for i in range(1, 41):
        dept = 1 + (i - 1) % 5
        manager = None if i <= 5 else dept  # employees 1..5 head departments 1..5
        title = "Manager" if i <= 5 else rng.choice([t for t in titles if t != "Manager"])
        salary = rng.randrange(40, 130) * 1000 if i > 5 else rng.randrange(120, 160) * 1000
        conn.execute(
            "INSERT INTO employees VALUES (?, ?, ?, ?, ?, ?, ?)",
            (i, _name(rng, used), dept, manager, title, salary, _day(rng, date(2015, 1, 1), 3500)),
        )
    projects = [
        ("Apollo", 1, 500000),
        ("Borealis", 1, 250000),
        ("Comet", 2, 120000),
        ("Delta", 3, 80000),
        ("Echo", 4, 60000),
        ("Falcon", 1, 300000),
        ("Gemini", 5, 40000),
    ]
    for i, p in enumerate(projects, 1):
        conn.execute("INSERT INTO projects VALUES (?, ?, ?, ?)", (i, *p))
    pairs = set()
    while len(pairs) < 45:
        pairs.add((rng.randrange(1, 41), rng.randrange(1, len(projects) + 1)))
    for emp, proj in sorted(pairs):
        conn.execute("INSERT INTO assignments VALUES (?, ?, ?)", (emp, proj, rng.randrange(5, 200)))
    conn.commit()
    conn.close()


BUILDERS = {"shop": build_shop, "library": build_library, "hr": build_hr}


def build_all(folder: Path) -> dict[str, Path]:
    """Each database as folder/<name>.sqlite, rebuilt from scratch."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, build in BUILDERS.items():
        path = folder / f"{name}.sqlite"
        path.unlink(missing_ok=True)
        build(path)
        paths[name] = path
    return paths


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    for name, path in build_all(out).items():
        print(name, path)
