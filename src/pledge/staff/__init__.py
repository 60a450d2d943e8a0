"""Staff access to the admin console: accounts with a role, login with a password (argon2id)
and a TOTP code, sessions, and the role matrix every console page is checked against."""

from pledge.staff.routes import (
    COOKIE,
    ConsoleForm,
    NotAllowed,
    SignInNeeded,
    Staff,
    console_exception_handlers,
    console_page,
    require,
)
from pledge.staff.routes import pages as page_routes
from pledge.staff.rules import ROLE_PERMISSIONS, AccountRefused, Permission, Role, allows
from pledge.staff.service import Enrolment, StaffDirectory, StaffNotFound, StaffView

__all__ = [
    "COOKIE",
    "ROLE_PERMISSIONS",
    "AccountRefused",
    "ConsoleForm",
    "Enrolment",
    "NotAllowed",
    "Permission",
    "Role",
    "SignInNeeded",
    "Staff",
    "StaffDirectory",
    "StaffNotFound",
    "StaffView",
    "allows",
    "console_exception_handlers",
    "console_page",
    "page_routes",
    "require",
]
