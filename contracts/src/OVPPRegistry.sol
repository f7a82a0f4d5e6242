// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ERC2771Context} from "@openzeppelin/contracts/metatx/ERC2771Context.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Context} from "@openzeppelin/contracts/utils/Context.sol";

/**
 * @title OpenVPP Registry Service
 * @notice The on-chain registry of OpenVPP: utilities (territory, control-server endpoints per
 *         protocol, fee recipient, CA certificate), their programs (eligibility and connection
 *         fee), device models registered by vendors (capabilities, protocols, vendor server),
 *         and the log of device-to-program connections with enrollment counts per program and
 *         per device type ("grid-level device awareness").
 *
 * Identifiers are chosen off-chain and can be recomputed with the pure helpers below:
 *  - utilityId  = keccak256(bytes(slug))                                  {utilityIdOf}
 *  - programId  = keccak256(abi.encode(utilityId, externalProgramId))     {programIdOf}
 *  - modelId    = keccak256(abi.encode(make, model))                      {modelIdOf}
 *  - deviceId   = keccak256(abi.encode(make, model, serial))              {deviceIdOf}
 *    (the serial number itself is never stored on chain)
 *  - protocol   = keccak256(bytes(name)), name one of "OPENADR_2_0B", "OPENADR_3",
 *                 "IEEE_2030_5", "OCPP_2_0_1", "OCPP_1_6J", "MATTER", ...
 *
 * Every authorization uses {_msgSender}: customers, utility admins, sponsors and vendors may
 * act gaslessly through the trusted ERC-2771 forwarder (`OVPPForwarder`) fixed at deployment.
 * State-changing functions contain no loop whose length is not capped by {MAX_PROTOCOLS} or
 * {MAX_POSTAL_CODES}; only views loop over unbounded lists.
 *
 * Roles: DEFAULT_ADMIN_ROLE manages roles; REGISTRAR_ROLE (the Integration Service) onboards
 * utilities and vendors and is the admin role of VENDOR_ROLE (so it may also revoke vendors);
 * VENDOR_ROLE registers and updates device models. Compiled for the `shanghai` EVM.
 */
contract OVPPRegistry is ERC2771Context, AccessControl {
    using SafeERC20 for IERC20;

    // ------------------------------------------------------------------ constants and types

    /// @notice The Integration Service: registers utilities and vendors.
    bytes32 public constant REGISTRAR_ROLE = keccak256("REGISTRAR_ROLE");
    /// @notice Device vendors (aggregators): register and update their device models.
    bytes32 public constant VENDOR_ROLE = keccak256("VENDOR_ROLE");

    /// @notice Cap on the protocol list of a program or a device model.
    uint256 public constant MAX_PROTOCOLS = 16;
    /// @notice Cap on a utility's postal-code list (entries may be inclusive ranges).
    uint256 public constant MAX_POSTAL_CODES = 128;

    /// @notice Device types; bit `i` of a program's `eligibleDeviceTypes` is `1 << i`.
    enum DeviceType {
        BATTERY,
        EV_CHARGER,
        SOLAR_INVERTER,
        THERMOSTAT,
        HEAT_PUMP,
        EV
    }

    /// @notice NONE is the zero value of a connection id that was never issued.
    enum Status {
        NONE,
        ACTIVE,
        DISCONNECTED
    }

    struct Utility {
        address admin;
        string name;
        string country; // ISO 3166-1 alpha-2, e.g. "US"
        string region; // ISO 3166-2 subdivision, e.g. "US-CA" (may be empty)
        string[] postalCodes; // single codes ("94103") or inclusive ranges ("94102-94110")
        address feeRecipient;
        bytes32 caCertFingerprint;
        bool exists;
    }

    struct Program {
        bytes32 utilityId;
        string externalId;
        bytes32[] protocols;
        uint8 eligibleDeviceTypes; // bitmask over DeviceType
        uint32 minChargeW;
        uint32 minDischargeW;
        uint32 minEnergyWh;
        uint256 connectionFee; // OVPP base units
        address sponsor; // pays the fee through {connectSponsored}; 0 = none
        bool active;
        uint64 activeConnections;
        bool exists;
    }

    struct DeviceModel {
        address vendor;
        string make;
        string model;
        DeviceType deviceType;
        uint32 maxChargeW;
        uint32 maxDischargeW;
        uint32 energyWh;
        uint32 nominalVoltageV;
        bytes32[] protocols;
        string vendorEndpoint;
        bytes32 vendorCertFingerprint;
        bool exists;
    }

    /// @dev Field order packs the struct into 7 storage slots.
    struct Connection {
        bytes32 deviceId;
        bytes32 modelId;
        bytes32 programId;
        bytes32 protocol;
        address owner;
        DeviceType deviceType; // snapshot at connect time: the model may change later
        Status status;
        uint64 connectedAt;
        address payer;
        uint64 disconnectedAt;
        uint256 feePaid;
    }

    // ------------------------------------------------------------------ errors

    error ZeroAddress();
    error InvalidCountryCode(string country);
    error EmptyString();
    error TooManyProtocols(uint256 count);
    error TooManyPostalCodes(uint256 count);
    error InvalidDeviceTypeMask(uint8 mask);
    error UtilityExists(bytes32 utilityId);
    error UnknownUtility(bytes32 utilityId);
    error NotUtilityAdmin(bytes32 utilityId, address caller);
    error UnknownProgram(bytes32 programId);
    error ProgramInactive(bytes32 programId);
    error DeviceModelExists(bytes32 modelId);
    error UnknownDeviceModel(bytes32 modelId);
    error NotModelVendor(bytes32 modelId, address caller);
    error ProtocolNotInProgram(bytes32 programId, bytes32 protocol);
    error ProtocolNotSupportedByModel(bytes32 modelId, bytes32 protocol);
    error DeviceTypeNotEligible(bytes32 programId, DeviceType deviceType);
    error ChargeBelowMinimum(uint32 maxChargeW, uint32 minChargeW);
    error DischargeBelowMinimum(uint32 maxDischargeW, uint32 minDischargeW);
    error EnergyBelowMinimum(uint32 energyWh, uint32 minEnergyWh);
    error NoControlEndpoint(bytes32 utilityId, bytes32 protocol);
    error NotSponsor(bytes32 programId, address caller);
    error AlreadyConnected(bytes32 deviceId, bytes32 programId, bytes32 connectionId);
    error ConnectionNotActive(bytes32 connectionId);
    error NotOwnerOrUtilityAdmin(bytes32 connectionId, address caller);

    // ------------------------------------------------------------------ events

    event VendorRegistered(address indexed vendor);
    event UtilityRegistered(bytes32 indexed utilityId, address indexed admin);
    /// @notice Emitted on registration and on every update, with the utility's new details.
    event UtilityDetailsSet(
        bytes32 indexed utilityId,
        string name,
        string country,
        string region,
        string[] postalCodes,
        address feeRecipient,
        bytes32 caCertFingerprint
    );
    event UtilityAdminTransferred(bytes32 indexed utilityId, address indexed previousAdmin, address indexed newAdmin);
    event ControlEndpointSet(bytes32 indexed utilityId, bytes32 indexed protocol, string endpoint);
    /// @notice Emitted on creation (`created`) and on every update of a program.
    event ProgramUpserted(
        bytes32 indexed programId,
        bytes32 indexed utilityId,
        string externalId,
        uint256 connectionFee,
        address sponsor,
        bool active,
        bool created
    );
    event DeviceModelRegistered(bytes32 indexed modelId, address indexed vendor, string make, string model);
    /// @notice Emitted on registration and on every update, with the model's new details.
    event DeviceModelDetailsSet(
        bytes32 indexed modelId,
        DeviceType deviceType,
        uint32 maxChargeW,
        uint32 maxDischargeW,
        uint32 energyWh,
        uint32 nominalVoltageV,
        bytes32[] protocols,
        string vendorEndpoint,
        bytes32 vendorCertFingerprint
    );
    event Connected(
        bytes32 indexed connectionId,
        bytes32 indexed deviceId,
        bytes32 indexed programId,
        address owner,
        address payer,
        uint256 fee,
        bytes32 protocol
    );
    event Disconnected(
        bytes32 indexed connectionId, bytes32 indexed deviceId, bytes32 indexed programId, address by
    );

    // ------------------------------------------------------------------ storage

    /// @notice The OVPP token connection fees are paid in. Immutable.
    IERC20 public immutable ovppToken;

    mapping(bytes32 utilityId => Utility) private _utilities;
    mapping(bytes32 utilityId => mapping(bytes32 protocol => string endpoint)) private _controlEndpoints;
    mapping(bytes32 utilityId => bytes32[] protocols) private _utilityProtocols;
    mapping(bytes32 utilityId => mapping(bytes32 protocol => bool)) private _utilityProtocolListed;
    mapping(bytes32 utilityId => bytes32[] programIds) private _programIds;

    mapping(bytes32 programId => Program) private _programs;
    mapping(bytes32 programId => mapping(uint8 deviceType => uint64)) private _activeByDeviceType;

    mapping(bytes32 modelId => DeviceModel) private _models;
    bytes32[] private _modelIds;

    mapping(bytes32 connectionId => Connection) private _connections;
    /// @dev keccak256(abi.encode(deviceId, programId)) => the ACTIVE connection, or 0.
    mapping(bytes32 slot => bytes32 connectionId) private _activeConnection;
    /// @notice Number of connections ever made (also the nonce in connection ids).
    uint256 public connectionCount;

    // ------------------------------------------------------------------ construction

    /**
     * @param trustedForwarder The ERC-2771 forwarder (an `OVPPForwarder`). Immutable.
     * @param ovppToken_ The OVPP token connection fees are paid in.
     * @param admin Receives DEFAULT_ADMIN_ROLE and REGISTRAR_ROLE.
     */
    constructor(address trustedForwarder, IERC20 ovppToken_, address admin) ERC2771Context(trustedForwarder) {
        if (address(ovppToken_) == address(0) || admin == address(0)) revert ZeroAddress();
        ovppToken = ovppToken_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(REGISTRAR_ROLE, admin);
        _setRoleAdmin(VENDOR_ROLE, REGISTRAR_ROLE);
    }

    // ------------------------------------------------------------------ id helpers

    function utilityIdOf(string calldata slug) external pure returns (bytes32) {
        return keccak256(bytes(slug));
    }

    function programIdOf(bytes32 utilityId, string memory externalId) public pure returns (bytes32) {
        return keccak256(abi.encode(utilityId, externalId));
    }

    function modelIdOf(string memory make, string memory model) public pure returns (bytes32) {
        return keccak256(abi.encode(make, model));
    }

    function deviceIdOf(string calldata make, string calldata model, string calldata serial)
        external
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(make, model, serial));
    }

    // ------------------------------------------------------------------ onboarding (registrar)

    /// @notice Grants VENDOR_ROLE (idempotent; revoke with `revokeRole`, as registrar).
    function registerVendor(address vendor) external onlyRole(REGISTRAR_ROLE) {
        if (vendor == address(0)) revert ZeroAddress();
        if (_grantRole(VENDOR_ROLE, vendor)) emit VendorRegistered(vendor);
    }

    function registerUtility(
        bytes32 utilityId,
        address admin,
        string memory name,
        string memory country,
        string memory region,
        string[] memory postalCodes,
        address feeRecipient,
        bytes32 caCertFingerprint
    ) external onlyRole(REGISTRAR_ROLE) {
        Utility storage u = _utilities[utilityId];
        if (u.exists) revert UtilityExists(utilityId);
        if (admin == address(0)) revert ZeroAddress();
        u.exists = true;
        u.admin = admin;
        emit UtilityRegistered(utilityId, admin);
        _setUtilityDetails(utilityId, name, country, region, postalCodes, feeRecipient, caCertFingerprint);
    }

    // ------------------------------------------------------------------ utilities (their admin)

    function updateUtility(
        bytes32 utilityId,
        string memory name,
        string memory country,
        string memory region,
        string[] memory postalCodes,
        address feeRecipient,
        bytes32 caCertFingerprint
    ) external {
        _requireUtilityAdmin(utilityId);
        _setUtilityDetails(utilityId, name, country, region, postalCodes, feeRecipient, caCertFingerprint);
    }

    /// @notice Sets (or, with "", clears) the utility's control-server endpoint for `protocol`.
    function setControlEndpoint(bytes32 utilityId, bytes32 protocol, string calldata endpoint) external {
        _requireUtilityAdmin(utilityId);
        _controlEndpoints[utilityId][protocol] = endpoint;
        if (!_utilityProtocolListed[utilityId][protocol]) {
            _utilityProtocolListed[utilityId][protocol] = true;
            _utilityProtocols[utilityId].push(protocol);
        }
        emit ControlEndpointSet(utilityId, protocol, endpoint);
    }

    function transferUtilityAdmin(bytes32 utilityId, address newAdmin) external {
        address previous = _requireUtilityAdmin(utilityId);
        if (newAdmin == address(0)) revert ZeroAddress();
        _utilities[utilityId].admin = newAdmin;
        emit UtilityAdminTransferred(utilityId, previous, newAdmin);
    }

    /// @notice Creates or updates the program `programIdOf(utilityId, externalId)`.
    function upsertProgram(
        bytes32 utilityId,
        string memory externalId,
        bytes32[] memory protocols,
        uint8 eligibleDeviceTypes,
        uint32 minChargeW,
        uint32 minDischargeW,
        uint32 minEnergyWh,
        uint256 connectionFee,
        address sponsor,
        bool active
    ) external returns (bytes32 programId) {
        _requireUtilityAdmin(utilityId);
        if (bytes(externalId).length == 0) revert EmptyString();
        if (protocols.length > MAX_PROTOCOLS) revert TooManyProtocols(protocols.length);
        if (eligibleDeviceTypes >> (uint8(type(DeviceType).max) + 1) != 0) {
            revert InvalidDeviceTypeMask(eligibleDeviceTypes);
        }
        programId = programIdOf(utilityId, externalId);
        Program storage p = _programs[programId];
        bool created = !p.exists;
        if (created) {
            p.exists = true;
            p.utilityId = utilityId;
            p.externalId = externalId;
            _programIds[utilityId].push(programId);
        }
        p.protocols = protocols;
        p.eligibleDeviceTypes = eligibleDeviceTypes;
        p.minChargeW = minChargeW;
        p.minDischargeW = minDischargeW;
        p.minEnergyWh = minEnergyWh;
        p.connectionFee = connectionFee;
        p.sponsor = sponsor;
        p.active = active;
        emit ProgramUpserted(programId, utilityId, externalId, connectionFee, sponsor, active, created);
    }

    // ------------------------------------------------------------------ device models (vendors)

    function registerDeviceModel(
        string memory make,
        string memory model,
        DeviceType deviceType,
        uint32 maxChargeW,
        uint32 maxDischargeW,
        uint32 energyWh,
        uint32 nominalVoltageV,
        bytes32[] memory protocols,
        string memory vendorEndpoint,
        bytes32 vendorCertFingerprint
    ) external onlyRole(VENDOR_ROLE) returns (bytes32 modelId) {
        if (bytes(make).length == 0 || bytes(model).length == 0) revert EmptyString();
        modelId = modelIdOf(make, model);
        DeviceModel storage m = _models[modelId];
        if (m.exists) revert DeviceModelExists(modelId);
        m.exists = true;
        m.vendor = _msgSender();
        m.make = make;
        m.model = model;
        _modelIds.push(modelId);
        emit DeviceModelRegistered(modelId, m.vendor, make, model);
        _setModelDetails(
            modelId, deviceType, maxChargeW, maxDischargeW, energyWh, nominalVoltageV, protocols, vendorEndpoint,
            vendorCertFingerprint
        );
    }

    /// @notice Updates a model's capabilities; only its vendor, while it holds VENDOR_ROLE.
    function updateDeviceModel(
        bytes32 modelId,
        DeviceType deviceType,
        uint32 maxChargeW,
        uint32 maxDischargeW,
        uint32 energyWh,
        uint32 nominalVoltageV,
        bytes32[] memory protocols,
        string memory vendorEndpoint,
        bytes32 vendorCertFingerprint
    ) external onlyRole(VENDOR_ROLE) {
        DeviceModel storage m = _models[modelId];
        if (!m.exists) revert UnknownDeviceModel(modelId);
        if (m.vendor != _msgSender()) revert NotModelVendor(modelId, _msgSender());
        _setModelDetails(
            modelId, deviceType, maxChargeW, maxDischargeW, energyWh, nominalVoltageV, protocols, vendorEndpoint,
            vendorCertFingerprint
        );
    }

    // ------------------------------------------------------------------ connections

    /**
     * @notice Connects device `deviceId` of model `modelId` to `programId` over `protocol`; the
     *         caller owns the connection and pays the program's connection fee in OVPP to the
     *         utility's fee recipient (approve this registry first, e.g. in the same forwarder
     *         batch).
     */
    function connect(bytes32 deviceId, bytes32 modelId, bytes32 programId, bytes32 protocol)
        external
        returns (bytes32 connectionId)
    {
        address caller = _msgSender();
        return _connect(caller, caller, deviceId, modelId, programId, protocol);
    }

    /// @notice As {connect}, paid by the program's sponsor (the caller) for the customer `owner`.
    function connectSponsored(address owner, bytes32 deviceId, bytes32 modelId, bytes32 programId, bytes32 protocol)
        external
        returns (bytes32 connectionId)
    {
        address caller = _msgSender();
        address sponsor = _programs[programId].sponsor;
        if (sponsor == address(0) || caller != sponsor) revert NotSponsor(programId, caller);
        if (owner == address(0)) revert ZeroAddress();
        return _connect(owner, caller, deviceId, modelId, programId, protocol);
    }

    /// @notice Ends an ACTIVE connection; by its owner or the program's utility admin. No refund.
    function disconnect(bytes32 connectionId) external {
        Connection storage c = _connections[connectionId];
        if (c.status != Status.ACTIVE) revert ConnectionNotActive(connectionId);
        bytes32 programId = c.programId;
        Program storage p = _programs[programId];
        address caller = _msgSender();
        if (caller != c.owner && caller != _utilities[p.utilityId].admin) {
            revert NotOwnerOrUtilityAdmin(connectionId, caller);
        }
        c.status = Status.DISCONNECTED;
        c.disconnectedAt = uint64(block.timestamp);
        delete _activeConnection[_slot(c.deviceId, programId)];
        p.activeConnections -= 1;
        _activeByDeviceType[programId][uint8(c.deviceType)] -= 1;
        emit Disconnected(connectionId, c.deviceId, programId, caller);
    }

    // ------------------------------------------------------------------ views

    function getUtility(bytes32 utilityId) external view returns (Utility memory) {
        return _utilities[utilityId];
    }

    function getProgram(bytes32 programId) external view returns (Program memory) {
        return _programs[programId];
    }

    function getDeviceModel(bytes32 modelId) external view returns (DeviceModel memory) {
        return _models[modelId];
    }

    function getConnection(bytes32 connectionId) external view returns (Connection memory) {
        return _connections[connectionId];
    }

    /// @notice The ACTIVE connection of `deviceId` in `programId`, or zero.
    function activeConnectionOf(bytes32 deviceId, bytes32 programId) external view returns (bytes32) {
        return _activeConnection[_slot(deviceId, programId)];
    }

    /// @notice The utility's control-server endpoint for `protocol` ("" if none).
    function controlEndpoint(bytes32 utilityId, bytes32 protocol) external view returns (string memory) {
        return _controlEndpoints[utilityId][protocol];
    }

    /// @notice Every protocol the utility ever set an endpoint for (cleared ones included).
    function utilityProtocols(bytes32 utilityId) external view returns (bytes32[] memory) {
        return _utilityProtocols[utilityId];
    }

    /// @notice The utility's programs, in creation order.
    function programIdsOf(bytes32 utilityId) external view returns (bytes32[] memory) {
        return _programIds[utilityId];
    }

    /// @notice Every registered device model, in registration order.
    function modelIds() external view returns (bytes32[] memory) {
        return _modelIds;
    }

    function modelCount() external view returns (uint256) {
        return _modelIds.length;
    }

    /// @notice ACTIVE connections of devices of `deviceType` in `programId`.
    function activeConnectionsByType(bytes32 programId, DeviceType deviceType) external view returns (uint64) {
        return _activeByDeviceType[programId][uint8(deviceType)];
    }

    // ------------------------------------------------------------------ ERC-2771 plumbing

    /// @dev Calls through the trusted forwarder are attributed to the signer of the request.
    function _msgSender() internal view override(Context, ERC2771Context) returns (address) {
        return ERC2771Context._msgSender();
    }

    /// @dev Strips the appended signer address from forwarded calldata.
    function _msgData() internal view override(Context, ERC2771Context) returns (bytes calldata) {
        return ERC2771Context._msgData();
    }

    /// @dev 20 bytes: the length of the signer address the forwarder appends.
    function _contextSuffixLength() internal view override(Context, ERC2771Context) returns (uint256) {
        return ERC2771Context._contextSuffixLength();
    }

    // ------------------------------------------------------------------ internals

    function _requireUtilityAdmin(bytes32 utilityId) private view returns (address admin) {
        Utility storage u = _utilities[utilityId];
        if (!u.exists) revert UnknownUtility(utilityId);
        admin = u.admin;
        if (admin != _msgSender()) revert NotUtilityAdmin(utilityId, _msgSender());
    }

    function _setUtilityDetails(
        bytes32 utilityId,
        string memory name,
        string memory country,
        string memory region,
        string[] memory postalCodes,
        address feeRecipient,
        bytes32 caCertFingerprint
    ) private {
        if (bytes(name).length == 0) revert EmptyString();
        if (bytes(country).length != 2) revert InvalidCountryCode(country);
        if (postalCodes.length > MAX_POSTAL_CODES) revert TooManyPostalCodes(postalCodes.length);
        if (feeRecipient == address(0)) revert ZeroAddress();
        Utility storage u = _utilities[utilityId];
        u.name = name;
        u.country = country;
        u.region = region;
        u.postalCodes = postalCodes; // clears at most MAX_POSTAL_CODES old entries
        u.feeRecipient = feeRecipient;
        u.caCertFingerprint = caCertFingerprint;
        emit UtilityDetailsSet(utilityId, name, country, region, postalCodes, feeRecipient, caCertFingerprint);
    }

    function _setModelDetails(
        bytes32 modelId,
        DeviceType deviceType,
        uint32 maxChargeW,
        uint32 maxDischargeW,
        uint32 energyWh,
        uint32 nominalVoltageV,
        bytes32[] memory protocols,
        string memory vendorEndpoint,
        bytes32 vendorCertFingerprint
    ) private {
        if (protocols.length > MAX_PROTOCOLS) revert TooManyProtocols(protocols.length);
        DeviceModel storage m = _models[modelId];
        m.deviceType = deviceType;
        m.maxChargeW = maxChargeW;
        m.maxDischargeW = maxDischargeW;
        m.energyWh = energyWh;
        m.nominalVoltageV = nominalVoltageV;
        m.protocols = protocols;
        m.vendorEndpoint = vendorEndpoint;
        m.vendorCertFingerprint = vendorCertFingerprint;
        emit DeviceModelDetailsSet(
            modelId, deviceType, maxChargeW, maxDischargeW, energyWh, nominalVoltageV, protocols, vendorEndpoint,
            vendorCertFingerprint
        );
    }

    function _connect(
        address owner,
        address payer,
        bytes32 deviceId,
        bytes32 modelId,
        bytes32 programId,
        bytes32 protocol
    ) private returns (bytes32 connectionId) {
        Program storage p = _programs[programId];
        DeviceType deviceType = _checkEligible(p, deviceId, modelId, programId, protocol);

        connectionId = keccak256(abi.encode(deviceId, programId, ++connectionCount));
        uint256 fee = p.connectionFee;
        Connection storage c = _connections[connectionId];
        c.deviceId = deviceId;
        c.modelId = modelId;
        c.programId = programId;
        c.protocol = protocol;
        c.owner = owner;
        c.deviceType = deviceType;
        c.status = Status.ACTIVE;
        c.connectedAt = uint64(block.timestamp);
        c.payer = payer;
        c.feePaid = fee;
        _activeConnection[_slot(deviceId, programId)] = connectionId;
        p.activeConnections += 1;
        _activeByDeviceType[programId][uint8(deviceType)] += 1;
        emit Connected(connectionId, deviceId, programId, owner, payer, fee, protocol);

        // Interaction last. Reverts (and so undoes everything above) on insufficient balance or
        // allowance: no connection is formed unless the fee is paid.
        if (fee != 0) ovppToken.safeTransferFrom(payer, _utilities[p.utilityId].feeRecipient, fee);
    }

    /// @dev Reverts unless the model may connect to the program over `protocol`; returns its type.
    function _checkEligible(
        Program storage p,
        bytes32 deviceId,
        bytes32 modelId,
        bytes32 programId,
        bytes32 protocol
    ) private view returns (DeviceType deviceType) {
        if (!p.exists) revert UnknownProgram(programId);
        if (!p.active) revert ProgramInactive(programId);
        DeviceModel storage m = _models[modelId];
        if (!m.exists) revert UnknownDeviceModel(modelId);
        if (!_contains(p.protocols, protocol)) revert ProtocolNotInProgram(programId, protocol);
        if (!_contains(m.protocols, protocol)) revert ProtocolNotSupportedByModel(modelId, protocol);
        deviceType = m.deviceType;
        if ((p.eligibleDeviceTypes >> uint8(deviceType)) & 1 == 0) revert DeviceTypeNotEligible(programId, deviceType);
        if (m.maxChargeW < p.minChargeW) revert ChargeBelowMinimum(m.maxChargeW, p.minChargeW);
        if (m.maxDischargeW < p.minDischargeW) revert DischargeBelowMinimum(m.maxDischargeW, p.minDischargeW);
        if (m.energyWh < p.minEnergyWh) revert EnergyBelowMinimum(m.energyWh, p.minEnergyWh);
        if (bytes(_controlEndpoints[p.utilityId][protocol]).length == 0) revert NoControlEndpoint(p.utilityId, protocol);
        bytes32 active = _activeConnection[_slot(deviceId, programId)];
        if (active != bytes32(0)) revert AlreadyConnected(deviceId, programId, active);
    }

    /// @dev `list` is at most MAX_PROTOCOLS long.
    function _contains(bytes32[] storage list, bytes32 item) private view returns (bool) {
        uint256 n = list.length;
        for (uint256 i; i < n; ++i) {
            if (list[i] == item) return true;
        }
        return false;
    }

    function _slot(bytes32 deviceId, bytes32 programId) private pure returns (bytes32) {
        return keccak256(abi.encode(deviceId, programId));
    }
}
