CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, product_id INTEGER NOT NULL REFERENCES products(id),
                     customer TEXT NOT NULL, quantity INTEGER NOT NULL);
INSERT INTO products (id, name, price) VALUES
  (1, 'lamp', 25.0), (2, 'mug', 8.0), (3, 'notebook', 4.5), (4, 'chair', 60.0), (5, 'pen', 1.5);
INSERT INTO orders (product_id, customer, quantity) VALUES
  (1, 'Ada', 2), (2, 'Ada', 3), (4, 'Bob', 1), (5, 'Cy', 10), (3, 'Bob', 4), (2, 'Dee', 1),
  (1, 'Cy', 1);
