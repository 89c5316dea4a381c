"""pivh-live: real-time PIVH analyser for neonatal cranial ultrasound.

Research software, not a medical device. Heavy optional backends (torch,
TensorRT, web server) are imported where they are used, so importing this
package works on any machine.
"""

__version__ = "0.1.0"

DISCLAIMER = "RESEARCH USE ONLY - NOT FOR DIAGNOSIS"

__all__ = ["DISCLAIMER", "__version__"]
