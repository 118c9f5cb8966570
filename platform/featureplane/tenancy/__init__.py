"""Tenants as data: the spec model, the catalog that loads them, and their credentials."""

from featureplane.tenancy.catalog import TenantCatalog, load_spec
from featureplane.tenancy.credentials import CredentialStore, IssuedToken
from featureplane.tenancy.spec import TenantSpec

__all__ = ["CredentialStore", "IssuedToken", "TenantCatalog", "TenantSpec", "load_spec"]
