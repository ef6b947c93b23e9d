"""The Deployer port: where a module's dispatchers run, behind one interface.

`InProcessDeployer` runs dispatchers inside the management process on the embedded platform;
a Kubernetes deployer (one Deployment per module) will implement the same protocol. The
registry calls `deploy` after storing a module, `undeploy` before marking it deleted, and
`runtime` for `ModuleService.Get`.
"""

from ion.management.deployers.base import Deployer, Drainer, Runtime, SpecChecker
from ion.management.deployers.inprocess import InProcessDeployer

__all__ = ["Deployer", "Drainer", "InProcessDeployer", "Runtime", "SpecChecker"]
