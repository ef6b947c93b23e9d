"""Azure backends of Ion's ports: Blob Storage (`blobs`), Cosmos DB (`cosmos`), Service Bus.

Only this package imports ``azure.*`` (the ``ion-core[azure]`` extra), and nothing imports this
package until a cloud URL is opened through `ion.core.backends`, so the embedded setup never
loads the SDKs. Import the submodules directly; this module exports nothing.
"""

__all__: list[str] = []
