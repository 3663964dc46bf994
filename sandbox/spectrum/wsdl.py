"""Minimal document/literal WSDLs generated from the service layouts (reference §1, §9.1).

The operation element is a flat sequence of ``xsd:string`` elements in wire order (Authorization_ID,
GUID, then the layout); the response is typed loosely, as Spectrum's encoded responses are.
"""

from __future__ import annotations

from functools import lru_cache
from xml.sax.saxutils import quoteattr

from clients.spectrum.services import NS_TYPES, Service

COMMON_ELEMENTS = ("Authorization_ID", "GUID")


def request_elements(service: Service) -> tuple[str, ...]:
    """Every element the service declares, in wire order."""
    return COMMON_ELEMENTS + service.field_names


@lru_cache(maxsize=64)
def _template(service: Service) -> str:
    name = service.name
    elements = "\n".join(
        f'          <xsd:element name="{e}" type="xsd:string"/>' for e in request_elements(service)
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="http://schemas.xmlsoap.org/wsdl/"
    xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:xsd="http://www.w3.org/2001/XMLSchema"
    xmlns:tns="{NS_TYPES}" targetNamespace="{NS_TYPES}" name="{name}">
  <types>
    <xsd:schema targetNamespace="{NS_TYPES}" elementFormDefault="unqualified">
      <xsd:element name="{name}">
        <xsd:complexType>
          <xsd:sequence>
{elements}
          </xsd:sequence>
        </xsd:complexType>
      </xsd:element>
      <xsd:element name="{name}Response">
        <xsd:complexType>
          <xsd:sequence>
            <xsd:any minOccurs="0" maxOccurs="unbounded" processContents="skip"/>
          </xsd:sequence>
        </xsd:complexType>
      </xsd:element>
    </xsd:schema>
  </types>
  <message name="{name}Request"><part name="parameters" element="tns:{name}"/></message>
  <message name="{name}Response"><part name="parameters" element="tns:{name}Response"/></message>
  <portType name="{name}PortType">
    <operation name="{name}">
      <input message="tns:{name}Request"/>
      <output message="tns:{name}Response"/>
    </operation>
  </portType>
  <binding name="{name}Binding" type="tns:{name}PortType">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <operation name="{name}">
      <soap:operation soapAction=""/>
      <input><soap:body use="literal"/></input>
      <output><soap:body use="literal"/></output>
    </operation>
  </binding>
  <service name="{name}">
    <port name="{name}Port" binding="tns:{name}Binding">
      <soap:address location=__LOCATION__/>
    </port>
  </service>
</definitions>
"""


def render_wsdl(service: Service, base_url: str) -> str:
    """The WSDL of ``service`` with its endpoint at ``base_url``."""
    location = f"{base_url.rstrip('/')}/ws/{service.name}"
    return _template(service).replace("__LOCATION__", quoteattr(location))
