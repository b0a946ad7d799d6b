"""Orders of the company's own products, taken by the operator during a call (seed 004: a
bottled-water company): the product list with prices and stock, an order for a customer
(items at the price of the day, delivery address, day and slot), its states, and the
customer's order history on the card.

Stock is taken when the order is placed (refused with 409 naming the product when there
is not enough) and given back when an order is cancelled or returned. Every change is in
the audit log; every state in ``order_events``.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, Literal

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from pydantic import Field
from sanic import Request
from sanic.response import HTTPResponse, json

from ccorch.api.http import json_body, pool
from ccorch.api.routes import Route
from ccorch.api.validation import Body, Day, Id, ValidationFailed, parse
from ccorch.crm.store import User, audit, can_see_customer, plain_row
from ccorch.errors import RequestRefused

SLOTS = ("09-12", "12-15", "15-18", "18-21")
# state -> the states it may go to
FLOW: dict[str, tuple[str, ...]] = {
    "new": ("confirmed", "cancelled"),
    "confirmed": ("delivered", "cancelled"),
    "delivered": ("returned",),
    "returned": (),
    "cancelled": (),
}
GIVES_STOCK_BACK = {"cancelled", "returned"}

READERS = ("operator", "supervisor", "admin")
ADMINS = ("admin",)


class OrderItem(Body):
    product_id: Id
    quantity: Annotated[int, Field(ge=1, le=1000)]


class NewOrder(Body):
    customer_id: Id
    items: Annotated[list[OrderItem], Field(min_length=1, max_length=50)]
    address: (
        Annotated[
            str, Field(min_length=1, max_length=500, description="default: the customer's first")
        ]
        | None
    ) = None
    delivery_date: Day
    delivery_slot: Literal["09-12", "12-15", "15-18", "18-21"]
    note: Annotated[str, Field(max_length=2000)] | None = None


class OrderTransition(Body):
    to: Literal["confirmed", "delivered", "returned", "cancelled"]
    comment: Annotated[str, Field(max_length=2000)] | None = None


class NewProduct(Body):
    sku: Annotated[str, Field(min_length=1, max_length=40)]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    unit: Annotated[str, Field(min_length=1, max_length=20)] | None = None
    price: Annotated[float, Field(ge=0, le=10_000_000)]
    currency: Annotated[str, Field(pattern="^[A-Z]{3}$")] | None = None
    stock: Annotated[int, Field(ge=0, le=10_000_000)] | None = None


class ProductChange(Body):
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    price: Annotated[float, Field(ge=0, le=10_000_000)] | None = None
    stock: Annotated[int, Field(ge=0, le=10_000_000)] | None = None
    active: bool | None = None


async def products(conn: AsyncConnection[Any], *, all_: bool = False) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT id, sku, name, unit, price, currency, stock, active FROM products"
        + ("" if all_ else " WHERE active")
        + " ORDER BY name"
    )
    return [plain_row(r) for r in await cur.fetchall()]


async def place(
    conn: AsyncConnection[Any], body: Any, user: User, today: dt.date
) -> dict[str, Any]:
    """A new order for a customer the user may see; stock is taken in the same
    transaction. Raises ValidationFailed (422) or RequestRefused (404, 409)."""
    data = parse(NewOrder, body)
    if data["delivery_date"] < today:
        raise ValidationFailed({"delivery_date": "not in the past"})
    if len({i["product_id"] for i in data["items"]}) != len(data["items"]):
        raise ValidationFailed({"items": "each product once (give the quantity)"})
    customer_id = data["customer_id"]
    if not await can_see_customer(conn, user, customer_id, edit=True):
        raise RequestRefused(404, f"no customer {customer_id}")
    async with conn.transaction():
        address = data.get("address")
        if address is None:
            cur = await conn.execute(
                "SELECT text FROM customer_addresses WHERE customer_id = %s ORDER BY id LIMIT 1",
                (customer_id,),
            )
            row = await cur.fetchone()
            if row is None:
                raise ValidationFailed({"address": "required: the customer has no address"})
            address = str(row[0])
        ids = sorted(i["product_id"] for i in data["items"])
        cur = await conn.execute(
            "SELECT id, name, price, currency, stock, active FROM products"
            " WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
            (ids,),
        )
        found = {r[0]: r for r in await cur.fetchall()}
        missing = [i for i in ids if i not in found or not found[i][5]]
        if missing:
            raise ValidationFailed({"items": f"no product {missing[0]}"})
        currencies = {found[i][3] for i in ids}
        if len(currencies) > 1:
            raise ValidationFailed({"items": "products in one currency per order"})
        total = Decimal(0)
        for item in data["items"]:
            _, name, price, _, stock, _ = found[item["product_id"]]
            if stock < item["quantity"]:
                raise RequestRefused(409, f"not enough {name} in stock ({stock} left)")
            total += price * item["quantity"]
        cur = await conn.execute(
            """INSERT INTO orders (customer_id, address, delivery_date, delivery_slot, total,
                                   currency, note, created_by)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            (customer_id, address, data["delivery_date"], data["delivery_slot"], total,
             currencies.pop(), data.get("note", ""), user.id),
        )  # fmt: skip
        row = await cur.fetchone()
        assert row is not None
        order_id = int(row[0])
        for item in data["items"]:
            pid, qty = item["product_id"], item["quantity"]
            await conn.execute(
                "INSERT INTO order_items (order_id, product_id, quantity, price)"
                " VALUES (%s, %s, %s, %s)",
                (order_id, pid, qty, found[pid][2]),
            )
            await conn.execute("UPDATE products SET stock = stock - %s WHERE id = %s", (qty, pid))
        await conn.execute(
            "INSERT INTO order_events (order_id, status, user_id) VALUES (%s, 'new', %s)",
            (order_id, user.id),
        )
        order = await get(conn, order_id)
        await audit(conn, user.id, "create", "order", order_id, None, order)
    return order


async def get(conn: AsyncConnection[Any], order_id: int) -> dict[str, Any]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        """SELECT id, customer_id, status, address, delivery_date, delivery_slot, total,
                  currency, note, created_by, created_at FROM orders WHERE id = %s""",
        (order_id,),
    )
    row = await cur.fetchone()
    if row is None:
        raise RequestRefused(404, f"no order {order_id}")
    order = plain_row(row)
    order["next"] = list(FLOW[order["status"]])
    await cur.execute(
        """SELECT i.product_id, p.sku, p.name, p.unit, i.quantity, i.price
           FROM order_items i JOIN products p ON p.id = i.product_id
           WHERE i.order_id = %s ORDER BY p.name""",
        (order_id,),
    )
    order["items"] = [plain_row(r) for r in await cur.fetchall()]
    await cur.execute(
        "SELECT status, at, user_id, comment FROM order_events WHERE order_id = %s ORDER BY at, id",
        (order_id,),
    )
    order["events"] = [plain_row(r) for r in await cur.fetchall()]
    return order


async def of_customer(
    conn: AsyncConnection[Any], customer_id: int, limit: int = 20
) -> list[dict[str, Any]]:
    """The customer's orders, newest first, each with its items."""
    cur = await conn.execute(
        "SELECT id FROM orders WHERE customer_id = %s ORDER BY created_at DESC, id DESC LIMIT %s",
        (customer_id, limit),
    )
    return [await get(conn, int(r[0])) for r in await cur.fetchall()]


async def move(conn: AsyncConnection[Any], order_id: int, body: Any, user: User) -> dict[str, Any]:
    """The order's next state (``FLOW``); a cancelled or returned order's stock goes back."""
    data = parse(OrderTransition, body)
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT status, customer_id FROM orders WHERE id = %s FOR UPDATE", (order_id,)
        )
        row = await cur.fetchone()
        if row is None or not await can_see_customer(conn, user, row[1], edit=True):
            raise RequestRefused(404, f"no order {order_id}")
        status, to = str(row[0]), data["to"]
        if to not in FLOW[status]:
            allowed = ", ".join(FLOW[status]) or "none"
            raise RequestRefused(409, f"a {status} order cannot become {to} (allowed: {allowed})")
        await conn.execute("UPDATE orders SET status = %s WHERE id = %s", (to, order_id))
        if to in GIVES_STOCK_BACK:
            await conn.execute(
                """UPDATE products p SET stock = p.stock + i.quantity
                   FROM order_items i WHERE i.order_id = %s AND i.product_id = p.id""",
                (order_id,),
            )
        await conn.execute(
            "INSERT INTO order_events (order_id, status, user_id, comment) VALUES (%s, %s, %s, %s)",
            (order_id, to, user.id, data.get("comment", "")),
        )
        await audit(conn, user.id, "transition", "order", order_id, {"status": status},
                    {"status": to})  # fmt: skip
        return await get(conn, order_id)


# --- the API -------------------------------------------------------------------------------


def _today(request: Request) -> dt.date:
    clock = request.app.ctx.clock
    now: dt.datetime = clock()
    return now.date()


async def list_products(request: Request) -> HTTPResponse:
    admin = "admin" in request.ctx.user.roles and request.args.get("all") == "1"
    async with pool(request).connection() as conn:
        return json({"items": await products(conn, all_=admin)})


async def create_product(request: Request) -> HTTPResponse:
    data = parse(NewProduct, json_body(request))
    async with pool(request).connection() as conn, conn.transaction():
        cur = await conn.execute(
            """INSERT INTO products (sku, name, unit, price, currency, stock)
               VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (sku) DO NOTHING RETURNING id""",
            (data["sku"], data["name"], data.get("unit", "pcs"), Decimal(str(data["price"])),
             data.get("currency", "UAH"), data.get("stock", 0)),
        )  # fmt: skip
        row = await cur.fetchone()
        if row is None:
            raise RequestRefused(409, f"a product with sku {data['sku']} exists")
        await audit(conn, request.ctx.user.id, "create", "product", row[0], None,
                    {k: v for k, v in data.items()})  # fmt: skip
    return json({"id": row[0]}, status=201)


async def change_product(request: Request, product_id: int) -> HTTPResponse:
    data = parse(ProductChange, json_body(request))
    if not data:
        raise ValidationFailed({"(body)": "no field to change"})
    async with pool(request).connection() as conn, conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "SELECT name, price, stock, active FROM products WHERE id = %s FOR UPDATE",
            (product_id,),
        )
        before = await cur.fetchone()
        if before is None:
            raise RequestRefused(404, f"no product {product_id}")
        values = {k: Decimal(str(v)) if k == "price" else v for k, v in data.items()}
        sets = ", ".join(f"{k} = %s" for k in values)  # keys are the model's fields
        await conn.execute(
            f"UPDATE products SET {sets} WHERE id = %s", (*values.values(), product_id)
        )
        await audit(conn, request.ctx.user.id, "change", "product", product_id,
                    plain_row(before), plain_row(values))  # fmt: skip
    return json({"id": product_id, **plain_row(values)})


async def create_order(request: Request) -> HTTPResponse:
    async with pool(request).connection() as conn:
        order = await place(conn, json_body(request), request.ctx.user, _today(request))
    return json(order, status=201)


async def read_order(request: Request, order_id: int) -> HTTPResponse:
    async with pool(request).connection() as conn:
        order = await get(conn, order_id)
        if not await can_see_customer(conn, request.ctx.user, order["customer_id"]):
            raise RequestRefused(404, f"no order {order_id}")
    return json(order)


async def customer_orders(request: Request, customer_id: int) -> HTTPResponse:
    async with pool(request).connection() as conn:
        if not await can_see_customer(conn, request.ctx.user, customer_id):
            raise RequestRefused(404, f"no customer {customer_id}")
        return json({"items": await of_customer(conn, customer_id)})


async def transition_order(request: Request, order_id: int) -> HTTPResponse:
    async with pool(request).connection() as conn:
        return json(await move(conn, order_id, json_body(request), request.ctx.user))


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/api/products",
        "The products on sale, with price and stock (admin, ?all=1: inactive ones too)",
        READERS,
        list_products,
    ),
    Route(
        "POST",
        "/api/products",
        "A new product",
        ADMINS,
        create_product,
        body=NewProduct,
        responses={201: "created", 409: "the sku exists"},
    ),
    Route(
        "PATCH",
        "/api/products/<product_id:int>",
        "Change a product's name, price, stock or whether it is on sale; audited",
        ADMINS,
        change_product,
        body=ProductChange,
        responses={404: "no such product"},
    ),
    Route(
        "POST",
        "/api/orders",
        "Place an order for a customer: items at today's price, delivery day and slot; the"
        " stock is taken",
        READERS,
        create_order,
        body=NewOrder,
        responses={201: "placed", 404: "no such customer", 409: "not enough in stock"},
    ),
    Route(
        "GET",
        "/api/orders/<order_id:int>",
        "An order: items, delivery, state and its history",
        READERS,
        read_order,
        responses={404: "no such order"},
    ),
    Route(
        "POST",
        "/api/orders/<order_id:int>/transition",
        "Confirm, deliver, return or cancel an order (cancelled and returned give the stock back)",
        READERS,
        transition_order,
        body=OrderTransition,
        responses={404: "no such order", 409: "not allowed from its state"},
    ),
    Route(
        "GET",
        "/api/customers/<customer_id:int>/orders",
        "The customer's orders, newest first",
        READERS,
        customer_orders,
        responses={404: "no such customer"},
    ),
)
